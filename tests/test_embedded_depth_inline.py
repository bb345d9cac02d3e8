"""Embedded-depth readers on files built here (no ../shared needed): formats, conventions, orientation."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from embedded_depth_files import MAIN, dynamic_depth_file, gdepth_file, insert_segments, jpeg, png, segment, xmp_main
from magicbokeh.depth.embedded import EmbeddedDepthError, read_embedded_depth


def _scene(h=64, w=96, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _minmax(x):
    return (x - x.min()) / (x.max() - x.min())


def test_plain_photos_have_no_embedded_depth(tmp_path):
    assert read_embedded_depth(jpeg(_scene())) is None
    assert read_embedded_depth(png(_scene())) is None
    unrelated = insert_segments(jpeg(_scene()), [segment(MAIN + xmp_main('GImage:Mime="image/jpeg"'))])
    assert read_embedded_depth(unrelated) is None
    path = tmp_path / "plain.jpg"
    path.write_bytes(jpeg(_scene()))
    assert read_embedded_depth(path) is None


def test_gdepth_range_linear_jpeg_depth_in_many_chunks_lowercase_guid():
    dn8 = np.tile(np.linspace(0, 255, 96), (64, 1)).astype(np.uint8)
    depth_jpeg = jpeg(np.repeat(dn8[..., None], 3, 2), 100)
    data, _, guid = gdepth_file(
        jpeg(_scene()), depth_jpeg, jpeg(_scene(seed=1)), fmt="RangeLinear", near=2.0, far=50.0,
        focus=(0.25, 0.75, 14.0), chunk=997, guid_case="lower",
    )
    assert guid.islower()
    result = read_embedded_depth(data)
    assert result.format == "gdepth" and result.representation == "RangeLinear"
    dn = np.asarray(Image.open(io.BytesIO(depth_jpeg)).convert("RGB"), np.float64)[..., 0] / 255
    depth = 2.0 + dn * 48.0
    np.testing.assert_allclose(result.disparity_native, _minmax(1 / depth), atol=1e-5)
    np.testing.assert_allclose(result.depth_native, depth, rtol=1e-5)
    assert result.focus_point == pytest.approx((0.25, 0.75)) and result.focus_distance == 14.0
    # Closed form: the map spans Near..Far, so the focus disparity is (1/14 - 1/50) / (1/2 - 1/50).
    assert result.focus_disparity() == pytest.approx((1 / 14 - 1 / 50) / (1 / 2 - 1 / 50), abs=0.01)
    original = np.asarray(Image.open(io.BytesIO(jpeg(_scene(seed=1)))), np.float32) / 255
    np.testing.assert_array_equal(result.photo.rgb, original)


def test_gdepth_range_inverse_16bit_png():
    dn16 = (np.random.default_rng(2).random((64, 96)) * 65535).astype(np.uint16)
    data, _, _ = gdepth_file(jpeg(_scene()), png(dn16), None, fmt="RangeInverse", near=1.0, far=9.0)
    result = read_embedded_depth(data)
    dn = dn16.astype(np.float64) / 65535
    np.testing.assert_allclose(result.disparity_native, _minmax(1 - dn), atol=1e-6)
    np.testing.assert_allclose(result.depth_native, 9.0 / (9.0 - dn * 8.0), rtol=1e-5)
    # No GImage:Data: the primary is what there is to render, and the status says so.
    np.testing.assert_array_equal(result.photo.rgb, np.asarray(Image.open(io.BytesIO(jpeg(_scene()))), np.float32) / 255)
    assert any("no GImage:Data" in m for m in result.messages)


def test_rotated_lens_blur_photo_map_and_focus_turn_with_the_photo():
    # Stored 96x64 (landscape) with EXIF orientation 6: the upright photo is 64x96 (portrait).
    dn8 = np.full((64, 96), 255, np.uint8)
    dn8[:16, :16] = 0  # near block at the stored top-left -> upright top-right
    data, _, _ = gdepth_file(
        jpeg(_scene(), orientation=6), png(dn8), jpeg(_scene(), orientation=6), focus=(0.1, 0.1, 12.0)
    )
    result = read_embedded_depth(data)
    assert result.photo.size == (64, 96) and result.disparity.shape == (96, 64)
    assert result.disparity[4, 60] == 1.0 and result.disparity[4, 4] == 0.0 and result.disparity[90, 60] == 0.0
    assert result.focus_point == pytest.approx((0.9, 0.1))  # (u, v) -> (1 - v, u)


def test_dynamic_depth_inline_range_inverse_png_without_original():
    near, far = 0.5, 20.0
    dn16 = np.tile(np.linspace(0, 65535, 48), (32, 1)).astype(np.uint16)
    depth_png = png(dn16)
    extended = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Device="http://ns.google.com/photos/dd/1.0/device/"'
        ' xmlns:Container="http://ns.google.com/photos/dd/1.0/container/"'
        ' xmlns:Item="http://ns.google.com/photos/dd/1.0/item/"'
        ' xmlns:Camera="http://ns.google.com/photos/dd/1.0/camera/"'
        ' xmlns:Depth="http://ns.google.com/photos/dd/1.0/depthmap/">'
        '<Device:Container rdf:parseType="Resource"><Container:Directory><rdf:Seq>'
        '<rdf:li><Container:Item Item:Mime="image/jpeg" Item:Length="0" Item:DataURI="primary"/></rdf:li>'
        f'<rdf:li><Container:Item Item:Mime="image/png" Item:Length="{len(depth_png)}" Item:Padding="7"'
        ' Item:DataURI="depth"/></rdf:li>'
        "</rdf:Seq></Container:Directory></Device:Container>"
        '<Device:Cameras><rdf:Seq><rdf:li><Device:Camera rdf:parseType="Resource">'
        f'<Camera:DepthMap Depth:Format="RangeInverse" Depth:Near="{near}" Depth:Far="{far}"'
        ' Depth:Units="Meters" Depth:DepthURI="depth"/>'
        "</Device:Camera></rdf:li></rdf:Seq></Device:Cameras>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    main = xmp_main("", guid="0" * 32)
    smooth = cv2.GaussianBlur(_scene(h=64, w=96), (0, 0), 4)  # a photo without pixel noise
    data = dynamic_depth_file(jpeg(smooth), extended, main.decode(), [depth_png + b"\0" * 7])
    result = read_embedded_depth(data)
    assert result.format == "dynamic-depth" and result.representation == "RangeInverse"
    dn = dn16.astype(np.float64) / 65535
    np.testing.assert_allclose(result.disparity_native, _minmax(1 - dn), atol=1e-6)
    assert result.units == "Meters" and result.confidence is None
    assert result.disparity.shape == (64, 96)
    # A ramp upsampled 2x, guided by a smooth photo, stays a ramp: near (left) to far (right).
    row = result.disparity[32]
    assert row[0] > 0.95 and row[-1] < 0.05 and np.all(np.diff(row[4:-4]) <= 0.01)
    assert np.abs(row - np.interp(np.arange(96), np.arange(48) * 2 + 0.5, _minmax(1 - dn[0]))).max() < 0.05


def test_unsupported_gdepth_format_and_bad_range_are_clear():
    dn8 = np.zeros((64, 96), np.uint8)
    data, _, _ = gdepth_file(jpeg(_scene()), png(dn8), None, fmt="RangeQuadratic")
    with pytest.raises(EmbeddedDepthError, match="RangeQuadratic.*not supported"):
        read_embedded_depth(data)
    data, _, _ = gdepth_file(jpeg(_scene()), png(dn8), None, near=5.0, far=5.0)
    with pytest.raises(EmbeddedDepthError, match="range is invalid"):
        read_embedded_depth(data)


def test_heic_without_depth_is_none_and_other_representations_refused(monkeypatch):
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    Image.fromarray(_scene()).save(buf, format="HEIF")
    assert read_embedded_depth(buf.getvalue()) is None

    class FakeDepth:
        size = (48, 32)
        info = {"metadata": {"representation_type": 2, "d_min": 1.0, "d_max": 3.0}}

    class FakeHeif:
        info = {"depth_images": [FakeDepth()]}

    monkeypatch.setattr(pillow_heif, "open_heif", lambda *a, **k: FakeHeif())
    with pytest.raises(EmbeddedDepthError, match="uniform depth, which is not supported"):
        read_embedded_depth(buf.getvalue())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_maps_and_points_matches_pillow_exif_transpose(orientation):
    from PIL import ImageOps

    from magicbokeh.depth.embedded.convert import orient_map, orient_point

    stored = np.zeros((40, 60), np.uint8)
    stored[5, 10] = 255  # one marked pixel at (u, v) = ((10 + 0.5) / 60, (5 + 0.5) / 40)
    img = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    np.testing.assert_array_equal(orient_map(stored.astype(np.float32), orientation), upright.astype(np.float32))
    y, x = np.argwhere(upright == 255)[0]
    h, w = upright.shape
    assert orient_point(10.5 / 60, 5.5 / 40, orientation) == pytest.approx(((x + 0.5) / w, (y + 0.5) / h))


def test_subject_area_point_is_turned_upright():
    from magicbokeh.depth.embedded.heic import subject_area_point

    exif = Image.Exif()
    exif[0x8769] = {0x9214: (15, 10, 4, 4)}  # rectangle centred at stored (15, 10) of 60x40
    assert subject_area_point(exif.tobytes(), 60, 40, 1) == pytest.approx((0.25, 0.25))
    assert subject_area_point(exif.tobytes(), 60, 40, 6) == pytest.approx((0.75, 0.25))
    assert subject_area_point(exif.tobytes(), 10, 8, 1) is None  # outside the image
    assert subject_area_point(b"garbage", 60, 40, 1) is None
