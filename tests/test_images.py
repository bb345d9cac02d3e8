"""Image decoding: EXIF orientation, modes, bit depths, size limits, unreadable files."""

import io

import numpy as np
import pytest
from PIL import Image

from magicbokeh.errors import MagicBokehError
from magicbokeh.images import (
    content_key,
    disparity_from_map,
    exact_levels,
    load_map,
    load_photo,
    photo_key,
    save_png,
)


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_exif_rotated_jpeg_is_upright(tmp_path):
    # Stored 60x40 with a red block at the stored top-left; orientation 6 = rotate 90 deg clockwise.
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    photo = load_photo(path)
    assert photo.size == (40, 60)  # upright: width 40, height 60
    assert photo.rgb[2:8, 32:38, 0].mean() > 0.8  # the block is now top-right
    assert any("EXIF orientation 6" in m for m in photo.messages)


@pytest.mark.parametrize(
    "mode,expect",
    [("RGBA", "transparency"), ("P", "palette"), ("L", "grayscale"), ("I;16", "16-bit")],
)
def test_modes_are_converted_and_reported(tmp_path, mode, expect):
    base = Image.fromarray((np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8))
    if mode == "RGBA":
        img = base.convert("RGBA")
        img.putalpha(128)
    elif mode == "I;16":
        img = Image.fromarray((np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16))
    else:
        img = base.convert(mode)
    photo = load_photo(_png_bytes(img))
    assert photo.rgb.shape == (32, 48, 3) and photo.rgb.dtype == np.float32
    assert 0.0 <= photo.rgb.min() and photo.rgb.max() <= 1.0
    assert any(expect in m for m in photo.messages), photo.messages


def test_16bit_colour_png_keeps_precision(tmp_path):
    import cv2

    arr = np.zeros((20, 30, 3), np.uint16)
    arr[..., 2] = 1000  # red in OpenCV's BGR order
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), arr)
    photo = load_photo(path)
    assert photo.rgb[0, 0, 0] == pytest.approx(1000 / 65535, abs=1e-6)


def test_unreadable_and_truncated_files_rejected(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(MagicBokehError, match="cannot read image"):
        load_photo(bad)
    data = _png_bytes(Image.new("RGB", (200, 200), (10, 200, 30)), format="JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MagicBokehError, match="truncated"):
        load_photo(cut)
    with pytest.raises(MagicBokehError, match="no such file"):
        load_photo(tmp_path / "missing.png")


def test_size_limits(monkeypatch):
    with pytest.raises(MagicBokehError, match="at least 16 px"):
        load_photo(np.zeros((15, 100, 3), np.uint8))
    monkeypatch.setenv("MAGICBOKEH_MAX_MEGAPIXELS", "0.01")
    with pytest.raises(MagicBokehError, match="MAGICBOKEH_MAX_MEGAPIXELS"):
        load_photo(_png_bytes(Image.new("RGB", (200, 100))))


def test_disparity_maps_any_size_and_depth_flag(tmp_path):
    import cv2

    raw = np.tile(np.linspace(1000, 65535, 50).astype(np.uint16), (20, 1))  # 50x20, near on the right
    path = tmp_path / "disp16.png"
    cv2.imwrite(str(path), raw)
    disp = disparity_from_map(load_map(path), 100, 40)
    assert disp.shape == (40, 100)
    assert disp[:, -1].mean() == pytest.approx(1.0, abs=1e-6) and disp[:, 0].mean() == 0.0
    # Depth (far = large) flips the order.
    depth = disparity_from_map(load_map(path), 100, 40, is_depth=True)
    assert depth[:, 0].mean() == pytest.approx(1.0, abs=1e-6) and depth[:, -1].mean() < 0.01
    # 1 / depth, not a linear flip: halfway in depth is much farther than halfway in disparity.
    assert depth[:, 50].mean() < 0.1
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 2.0]], np.float32))
    with pytest.raises(MagicBokehError, match="NaN"):
        disparity_from_map(load_map(tmp_path / "nan.npy"), 10, 10)


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.random((17, 23, 3)).astype(np.float32)
    back = load_photo(save_png(tmp_path / "a.png", rgb)).rgb
    assert np.abs(back - rgb).max() <= 0.5 / 255 + 1e-6
    gray = rng.random((17, 23)).astype(np.float32)
    back16 = load_map(save_png(tmp_path / "g.png", gray, bits=16))
    assert np.abs(back16 - gray).max() <= 0.5 / 65535 + 1e-7


def test_colour_masks_are_read_as_luminance(tmp_path):
    """A red-on-black RGB mask must not vanish (OpenCV's channel 0 is blue)."""
    mask = np.zeros((10, 12, 3), np.uint8)
    mask[2:5, 3:9] = (255, 0, 0)  # pure red in RGB
    path = tmp_path / "mask.png"
    Image.fromarray(mask).save(path)
    loaded = load_map(path, what="focus mask")
    assert loaded.shape == (10, 12)
    assert (loaded > 0).sum() == 18 and loaded[0, 0] == 0.0
    assert loaded[3, 4] == pytest.approx(np.asarray(Image.fromarray(mask).convert("L"))[3, 4] / 255, abs=1 / 255)


def _heic_bytes(arr: np.ndarray, orientation: int = 1) -> bytes:
    pytest.importorskip("pillow_heif")
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    # EXIF as bytes: pillow-heif turns its orientation into the HEIF rotation property (irot).
    Image.fromarray(arr).save(buf, format="HEIF", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_heic_is_read_upright(tmp_path):
    # Same scene as the JPEG test: stored 60x40, red block top-left, orientation 6.
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:10, :10] = (255, 0, 0)
    data = _heic_bytes(arr, orientation=6)
    assert data[4:12] == b"ftypheic"
    path = tmp_path / "rot.HEIC"
    path.write_bytes(data)
    photo = load_photo(path)
    assert photo.size == (40, 60)
    assert photo.rgb[2:8, 32:38, 0].mean() > 0.8 and photo.rgb[2:8, 2:8, 0].mean() < 0.2
    assert any("orientation 6" in m for m in photo.messages), photo.messages


def test_heic_without_rotation_matches_pixels():
    arr = np.zeros((48, 64, 3), np.uint8)
    arr[:, 32:] = (20, 200, 90)
    photo = load_photo(_heic_bytes(arr))
    assert photo.size == (64, 48) and not any("orientation" in m for m in photo.messages)
    assert np.abs(photo.rgb * 255 - arr).mean() < 4  # lossy HEVC, flat regions


def test_heic_suffixes_are_image_suffixes():
    from magicbokeh.images import IMAGE_SUFFIXES

    assert ".heic" in IMAGE_SUFFIXES and ".heif" in IMAGE_SUFFIXES


def test_iphone_heic_from_shared():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared/testdata/phone-depth/pug.heic"
    if not path.is_file():
        pytest.skip("../shared/testdata/phone-depth is not present in this checkout")
    photo = load_photo(path)
    assert photo.size == (4032, 3024)


# The 8-bit fast path: float RGB made in one pass from the decoded uint8 pixels, keyed by them.


def _reference_unit(u8: np.ndarray) -> np.ndarray:
    """The general conversion the fast path must reproduce bit for bit."""
    return np.clip(u8.astype(np.float32) / 255.0, 0.0, 1.0)


@pytest.mark.parametrize("shape", [(37, 53, 3), (600, 500, 3)])  # the second spans several scan blocks
def test_8bit_photos_give_the_same_pixels_and_key_by_every_road(tmp_path, shape):
    u8 = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
    u8[0, 0], u8[-1, -1] = 0, 255
    path = tmp_path / "p.png"
    Image.fromarray(u8).save(path)
    expected = _reference_unit(u8)
    photos = [load_photo(path), load_photo(path.read_bytes()), load_photo(Image.fromarray(u8)), load_photo(u8),
              load_photo(np.asfortranarray(u8)), load_photo(expected.copy()),
              load_photo(Image.fromarray(u8).convert("RGBA"))]  # opaque alpha: the same pixels
    for photo in photos:
        assert photo.rgb.dtype == np.float32 and photo.rgb.flags.c_contiguous
        assert photo.rgb.tobytes() == expected.tobytes()
        assert photo.messages == []
    # One key for one content: that of the 8-bit pixels, whichever road decoded them.
    assert {p.key for p in photos} == {content_key(u8)}
    assert photo_key(expected) == content_key(u8)


def test_8bit_gray_and_palette_photos_match_the_general_path():
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    expected = _reference_unit(np.repeat(gray[..., None], 3, axis=2))
    for source in (gray, Image.fromarray(gray), _png_bytes(Image.fromarray(gray))):
        photo = load_photo(source)
        assert photo.rgb.tobytes() == expected.tobytes() and photo.key == photo_key(expected)
        assert any("grayscale" in m for m in photo.messages)
    palette = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert("P")
    photo = load_photo(_png_bytes(palette))
    expected = _reference_unit(np.asarray(palette.convert("RGB")))
    assert photo.rgb.tobytes() == expected.tobytes() and photo.key == photo_key(expected)


def test_translucent_photo_is_flattened_and_keyed_by_its_floats():
    rgba = np.random.default_rng(2).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[3, 4, 3] = 254  # one pixel not opaque
    photo = load_photo(Image.fromarray(rgba))
    f = rgba.astype(np.float32) / 255.0
    expected = np.clip(f[..., :3] * f[..., 3:4] + (1.0 - f[..., 3:4]), 0.0, 1.0).astype(np.float32)
    assert photo.rgb.tobytes() == expected.tobytes()
    assert any("transparency" in m for m in photo.messages)
    assert exact_levels(photo.rgb) is None and photo.key == content_key(photo.rgb)


def test_keys_tell_nearly_equal_images_apart():
    u8 = np.random.default_rng(3).integers(0, 256, (600, 500, 3), dtype=np.uint8)
    u8[0, 0, 0] = u8[-1, -1, -1] = 0
    rgb = _reference_unit(u8)
    assert exact_levels(rgb).tobytes() == u8.tobytes()
    keys = {photo_key(rgb)}
    for index in [(0, 0, 0), (599, 499, 2)]:  # the first and the last scan block
        for value in (2**-30, np.nan, -0.0, 1.5, -1 / 255, 0.5):  # 0.5: between two levels
            other = rgb.copy()
            other[index] = value
            assert exact_levels(other) is None
            key = photo_key(other)
            assert key == content_key(other) and key not in keys
            keys.add(key)
    assert exact_levels(rgb.astype(np.float64)) is None  # only float32 images have 8-bit levels


def test_saved_pixels_are_rounded_exactly(tmp_path):
    import cv2

    rng = np.random.default_rng(4)
    rgb = (rng.random((31, 45, 3)) * 1.4 - 0.2).astype(np.float32)
    edge = [0.5 - 2**-25, 1.0, 0.0, -0.0, 0.5 / 255, 127.5 / 255, 1e-9, 0.99999994, 2.0, -3.0]
    rgb[0, : len(edge), 0] = edge
    rgb[1, : len(edge), 2] = edge
    want8 = (np.clip(rgb, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    got = np.asarray(Image.open(save_png(tmp_path / "c.png", rgb)).convert("RGB"))  # RGB order
    assert np.array_equal(got, want8)
    gray = rgb[..., 0]
    want16 = (np.clip(gray, 0.0, 1.0) * np.float32(65535.0) + np.float32(0.5)).astype(np.uint16)
    assert np.array_equal(cv2.imread(str(save_png(tmp_path / "g.png", gray, bits=16)), cv2.IMREAD_UNCHANGED), want16)
    got16 = cv2.imread(str(save_png(tmp_path / "c16.png", rgb[:, ::-1], bits=16)), cv2.IMREAD_UNCHANGED)
    want = (np.clip(rgb[:, ::-1], 0.0, 1.0) * np.float32(65535.0) + np.float32(0.5)).astype(np.uint16)
    assert np.array_equal(got16[..., ::-1], want)


def test_map_levels_are_scaled_like_astype(tmp_path):
    import cv2

    rng = np.random.default_rng(6)
    for dtype, top in ((np.uint8, 255.0), (np.uint16, 65535.0)):
        raw = rng.integers(0, int(top) + 1, (23, 29), dtype=dtype)
        cv2.imwrite(str(tmp_path / "m.png"), raw)
        for source in (tmp_path / "m.png", raw):
            assert load_map(source).tobytes() == (raw.astype(np.float32) / top).tobytes()



@pytest.mark.parametrize("shape", [(7, 9), (7, 9, 1), (7, 9, 3), (7, 9, 4), (7, 9, 5), (0, 3), (13,)])
def test_unit_from_levels_is_the_float32_division_bit_for_bit(shape):
    from magicbokeh.images import unit_from_levels

    levels = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
    out = unit_from_levels(levels)
    want = levels.astype(np.float32) / np.float32(255.0)
    assert out.shape == want.shape and out.dtype == np.float32
    assert np.array_equal(out.view(np.uint32), want.view(np.uint32))


def test_prefetched_map_is_the_loaded_map_and_its_errors_are_the_same(tmp_path):
    from PIL import Image

    from magicbokeh.images import load_map, prefetch_map

    path = tmp_path / "disparity.png"
    levels = np.random.default_rng(3).integers(0, 65536, (40, 50), dtype=np.uint16)
    Image.fromarray(levels).save(path)
    direct = load_map(path)
    prefetch_map(path)
    assert np.array_equal(load_map(path), direct)
    # A map prefetched under another label is not taken for this one: the file is read again.
    prefetch_map(path, what="depth map")
    Image.fromarray(levels[::-1].copy()).save(path)
    assert np.array_equal(load_map(path), direct[::-1])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MagicBokehError) as direct_error:
        load_map(bad)
    prefetch_map(bad)
    with pytest.raises(MagicBokehError) as prefetched_error:
        load_map(bad)
    assert str(prefetched_error.value) == str(direct_error.value)
