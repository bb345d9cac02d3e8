"""Depth embedded by phones, on the real files in ../shared/testdata/phone-depth (skipped without them)."""

from __future__ import annotations

import base64
import io
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from magicbokeh.depth.embedded import read_embedded_depth

PHONE = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "phone-depth"


@pytest.fixture
def phone() -> Path:
    if not (PHONE / "pug.heic").is_file():
        pytest.skip("../shared/testdata/phone-depth is not present in this checkout")
    return PHONE


def _naive_extended_xmp(data: bytes) -> str:
    """Extended XMP of a JPEG, reassembled by scanning for the APP1 extension header (test-only)."""
    head = b"http://ns.adobe.com/xmp/extension/\x00"
    parts, pos = {}, 0
    while (pos := data.find(b"\xff\xe1", pos)) >= 0:
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        body = data[pos + 4 : pos + 2 + length]
        if body.startswith(head):
            total, offset = struct.unpack(">II", body[len(head) + 32 : len(head) + 40])
            parts[offset] = body[len(head) + 40 :]
        pos += 2
    out = b"".join(parts[k] for k in sorted(parts))
    assert len(out) == total
    return out.decode()


def test_heic_depth_matches_upstream_decode_exactly(phone):
    result = read_embedded_depth(phone / "pug.heic")
    assert result is not None and result.format == "heic-depth"
    reference = np.asarray(Image.open(phone / "pug_depth.png"), np.float32)
    assert reference.shape == (576, 768)
    lo, hi = reference.min(), reference.max()
    expected = (reference - lo) / (hi - lo)  # normalisation: bright = near = 1
    np.testing.assert_array_equal(result.disparity_native, expected)
    assert result.representation == "uniform disparity"
    assert result.photo.size == (4032, 3024) and result.disparity.shape == (3024, 4032)
    # d_min 1.498, d_max 4.383 (README): depth range is their inverse.
    assert result.near == pytest.approx(1 / 4.3828125) and result.far == pytest.approx(1 / 1.498046875)
    # EXIF SubjectArea (2003, 1506, 2209, 1327): centre of the metering/focus rectangle.
    assert result.focus_point == pytest.approx((2003 / 4032, 1506 / 3024))
    assert result.focus_source == "EXIF SubjectArea"
    fx, fy = int(2003 / 4032 * 768), int(1506 / 3024 * 576)
    assert result.focus_disparity() == pytest.approx(float(np.median(expected[fy - 2 : fy + 3, fx - 2 : fx + 3])), abs=0.03)
    # The upsampled map, averaged back to the stored size, is the stored map up to edge detail.
    back = cv2.resize(result.disparity, (768, 576), interpolation=cv2.INTER_AREA)
    assert np.abs(back - expected).mean() < 0.02
    assert 0.0 <= result.disparity.min() and result.disparity.max() <= 1.0


def test_heic_guided_upsampling_follows_photo_edges(phone):
    guided = read_embedded_depth(phone / "pug.heic")
    plain = read_embedded_depth(phone / "pug.heic", guided=False)
    # Where the photo has strong edges, the guided map's gradient aligns with the photo's more.
    gray = cv2.cvtColor(guided.photo.rgb, cv2.COLOR_RGB2GRAY)

    def alignment(d):
        gx = cv2.Sobel(d, cv2.CV_32F, 1, 0) * cv2.Sobel(gray, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(d, cv2.CV_32F, 0, 1) * cv2.Sobel(gray, cv2.CV_32F, 0, 1)
        return float(np.abs(gx + gy).mean())

    assert alignment(guided.disparity) > 1.2 * alignment(plain.disparity)


def test_gdepth_lens_blur_sample(phone):
    path = phone / "gdepth_motorola_xt912.jpg"
    data = path.read_bytes()
    result = read_embedded_depth(path)
    assert result is not None and result.format == "gdepth" and result.representation == "RangeInverse"
    assert (result.near, result.far) == pytest.approx((18.849538803100586, 633.323486328125))
    extended = _naive_extended_xmp(data)
    depth_png = base64.b64decode(re.search(r'GDepth:Data="([^"]+)"', extended).group(1))
    rgb = np.asarray(Image.open(io.BytesIO(depth_png)).convert("RGB"), np.float64)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    dn = rgb[..., 0] / 255.0
    inv = 1.0 - dn
    expected = (inv - inv.min()) / (inv.max() - inv.min())  # minmax(1 - dn)
    np.testing.assert_allclose(result.disparity_native, expected, atol=1e-6)
    np.testing.assert_array_equal(result.disparity, result.disparity_native)  # same size as the original
    # Depth at the focal point equals GFocus:FocalDistance (README: 26.52 vs 26.5176).
    x, y = result.focus_point
    assert (x, y) == pytest.approx((0.29814816, 0.53194445))
    h, w = dn.shape
    near, far = result.near, result.far
    d_ref = far * near / (far - dn[int(y * h), int(x * w)] * (far - near))
    assert d_ref == pytest.approx(26.5176, abs=0.01)
    assert result.depth_native[int(y * h), int(x * w)] == pytest.approx(d_ref, rel=1e-5)
    assert result.focus_distance == pytest.approx(26.517597)
    # The focus preset from FocalDistance is the map's disparity at the focal point.
    assert result.focus_disparity() == pytest.approx(expected[int(y * h), int(x * w)], abs=0.005)
    # The photo is GImage:Data (the unblurred original), not the phone-blurred primary JPEG.
    original = base64.b64decode(re.search(r'GImage:Data="([^"]+)"', extended).group(1))
    orig_rgb = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"), np.float32) / 255.0
    np.testing.assert_array_equal(result.photo.rgb, orig_rgb)
    primary = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    assert primary.shape == orig_rgb.shape

    def sharpness(img):
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())

    assert sharpness(result.photo.rgb) > 1.5 * sharpness(primary)


def test_dynamic_depth_built_from_shared_xmp(phone):
    from embedded_depth_files import dynamic_depth_file, jpeg

    xml = (phone / "dynamic_depth_pixel_portrait.xml").read_text()
    main_xml, extended_xml = [p.strip() + "\n</x:xmpmeta>" for p in xml.split("</x:xmpmeta>")[:2]]
    rng = np.random.default_rng(3)
    sharp = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    ramp = np.tile(np.linspace(20, 235, 64), (48, 1)).astype(np.uint8)
    ramp[10:30, 20:40] = 0  # a near block (0 = Near)
    conf = np.full((48, 64), 200, np.uint8)
    items = [jpeg(sharp), jpeg(np.repeat(ramp[..., None], 3, 2), 100), jpeg(np.repeat(conf[..., None], 3, 2), 100)]
    for old, new in zip(("2420326", "135047", "96395"), items):
        extended_xml = extended_xml.replace(f'Item:Length="{old}"', f'Item:Length="{len(new)}"')
    data = dynamic_depth_file(jpeg(blurred), extended_xml, main_xml, items)
    result = read_embedded_depth(data)
    assert result is not None and result.format == "dynamic-depth"
    assert result.representation == "RangeLinear" and (result.near, result.far) == (0.3, 8.0)
    dn = np.asarray(Image.open(io.BytesIO(items[1])).convert("RGB"), np.float64)[..., 0] / 255.0
    inv = 1.0 / (0.3 + dn * (8.0 - 0.3))  # RangeLinear depth, then disparity
    expected = (inv - inv.min()) / (inv.max() - inv.min())
    np.testing.assert_allclose(result.disparity_native, expected, atol=1e-5)
    assert result.disparity_native[20, 30] > 0.95  # the near block is near
    orig = np.asarray(Image.open(io.BytesIO(items[0])).convert("RGB"), np.float32) / 255.0
    np.testing.assert_array_equal(result.photo.rgb, orig)  # the original item, not the primary
    assert result.disparity.shape == (96, 128) and result.confidence.shape == (96, 128)
    assert result.confidence.mean() == pytest.approx(200 / 255, abs=2 / 255)
    assert result.units == "None"
