"""Processing size (``max_side``): output sizes, the K rule, scaled focus inputs, CLI, uploads."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import textured
from magicbokeh import processing
from magicbokeh.cli import main
from magicbokeh.errors import MagicBokehError
from magicbokeh.images import save_png
from magicbokeh.pipeline import Focus, RenderSettings, render


def edge_scene(h: int = 96, w: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """A dark left half and a bright right half; every pixel far (disparity 0)."""
    img = np.full((h, w, 3), 0.1, np.float32)
    img[:, w // 2 :] = 0.9
    return img, np.zeros((h, w), np.float32)


def edge_width(image: np.ndarray) -> float:
    """Width in pixels of the 10 %-90 % transition of the mean row's luminance."""
    row = image.mean(axis=(0, 2))
    lo, hi = row.min(), row.max()
    t10, t90 = lo + 0.1 * (hi - lo), lo + 0.9 * (hi - lo)
    x = np.arange(row.size)
    return float(np.interp(t90, row, x) - np.interp(t10, row, x))


def blurred_width(max_side: int | None, k_units: str, k: float = 16.0) -> float:
    img, disp = edge_scene()
    res = render(img, depth=disp, focus=Focus.disparity(1.0), settings=RenderSettings(k=k),
                 max_side=max_side, k_units=k_units)
    assert res.image.shape == img.shape  # matched back to the input's size
    return edge_width(res.image)


def test_plan_caps_long_side_keeps_aspect_and_never_upscales():
    p = processing.plan(4000, 3000, 1600)
    assert p.processed_size == (1600, 1200) and p.resized and p.scale == pytest.approx(0.4)
    portrait = processing.plan(1000, 3000, 1500)
    assert portrait.processed_size == (500, 1500)
    small = processing.plan(800, 600, 1600)
    assert small.processed_size == (800, 600) and not small.resized and small.scale == 1.0
    assert processing.plan(4000, 3000, None).processed_size == (4000, 3000)


@pytest.mark.parametrize("bad", [32, 9000, 512.5, "big", float("nan")])
def test_bad_max_side_is_our_error(bad):
    with pytest.raises(MagicBokehError, match="processing size"):
        processing.check_max_side(bad)


def test_k_rule_scales_only_for_input_units():
    p = processing.plan(2000, 1000, 1000)
    assert processing.k_for_processing(20.0, p, "processed") == 20.0
    assert processing.k_for_processing(20.0, p, "input") == pytest.approx(10.0)
    assert processing.k_for_processing(20.0, processing.plan(800, 400, 1000), "input") == 20.0


def test_output_size_with_and_without_match_input_size():
    img = textured(120, 200, seed=1)
    disp = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (120, 1))
    matched = render(img, depth=disp, focus=Focus.point(150, 60), settings=RenderSettings(k=8), max_side=100)
    assert matched.image.shape == (120, 200, 3)
    assert matched.disparity.shape == matched.defocus.shape == matched.in_focus.shape == (120, 200)
    assert matched.photo.rgb.shape == (120, 200, 3) and matched.focus_point == (150, 60)
    info = matched.info()
    assert info["input_size"] == [200, 120] and info["output_size"] == [200, 120]
    assert info["processed_size"] == [100, 60]
    raw = render(img, depth=disp, focus=Focus.point(150, 60), settings=RenderSettings(k=8), max_side=100,
                 match_input_size=False)
    assert raw.image.shape == (60, 100, 3) and raw.photo.rgb.shape == (60, 100, 3)
    assert raw.info()["input_size"] == [200, 120] and raw.info()["output_size"] == [100, 60]
    # the focus point was scaled with the photo: it still lands on the same disparity
    assert raw.focus_point == (75, 30)
    assert matched.focus_disparity == pytest.approx(150 / 199, abs=0.02)


def test_max_side_none_is_exactly_todays_render():
    img = textured(64, 96, seed=3)
    disp = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (64, 1))
    kwargs = dict(depth=disp, focus=Focus.point(20, 30), settings=RenderSettings(k=12))
    a = render(img, **kwargs)
    b = render(img, max_side=None, k_units="input", **kwargs)
    c = render(img, max_side=512, **kwargs)  # larger than the photo: no resize either
    assert np.array_equal(a.image, b.image) and np.array_equal(a.image, c.image)
    assert "processed_size" not in c.info() and a.settings.k == b.settings.k == 12


def test_same_visual_blur_at_two_processing_sizes_with_input_k_units():
    full = blurred_width(None, "input")
    half = blurred_width(96, "input")
    assert full > 8  # the edge really is blurred (K = 16 px at this size)
    assert half == pytest.approx(full, rel=0.2)
    # Negative control: keeping K in processed pixels doubles the blur in input pixels.
    half_processed_units = blurred_width(96, "processed")
    assert half_processed_units > 1.5 * half


def test_focus_mask_and_supplied_map_follow_the_downscale(tmp_path):
    h, w = 80, 160
    img = textured(h, w, seed=5)
    disp = np.zeros((h, w), np.float32)
    disp[:, : w // 4] = 0.8  # a near strip on the left
    mask = np.zeros((h, w), np.uint8)
    mask[20:60, 5:30] = 255
    mask_path = tmp_path / "mask.png"
    save_png(mask_path, mask.astype(np.float32) / 255)
    res = render(img, depth=disp, focus=Focus.mask(str(mask_path)), settings=RenderSettings(k=16),
                 max_side=80, match_input_size=False)
    assert res.image.shape == (40, 80, 3)
    full = render(img, depth=disp, focus=Focus.mask(str(mask_path)), settings=RenderSettings(k=16))
    assert res.focus_disparity == pytest.approx(full.focus_disparity, abs=0.01)
    assert res.focus_disparity > 0.9  # the near strip (maps are normalised: near = 1)
    with pytest.raises(MagicBokehError, match="focus mask is"):  # still checked at the input's size
        render(img, depth=disp, focus=Focus.mask(mask[:40]), max_side=80)


def test_focus_point_outside_input_is_rejected_before_scaling():
    img = textured(64, 128, seed=2)
    with pytest.raises(MagicBokehError, match="outside the 128x64 image"):
        render(img, depth=np.zeros((64, 128), np.float32), focus=Focus.point(130, 10), max_side=64)


def test_cli_max_side(tmp_path):
    img = textured(100, 300, seed=4)
    src = tmp_path / "photo.png"
    save_png(src, img)
    disp = tmp_path / "disp.npy"
    np.save(disp, np.tile(np.linspace(0, 1, 300, dtype=np.float32), (100, 1)))
    out = tmp_path / "out.png"
    assert main(["render", str(src), "-o", str(out), "--depth", str(disp), "--max-side", "150", "-q"]) == 0
    from PIL import Image

    assert Image.open(out).size == (300, 100)
    out2 = tmp_path / "out2.png"
    assert main(["render", str(src), "-o", str(out2), "--depth", str(disp), "--max-side", "150",
                 "--output-size", "processed", "-q"]) == 0
    assert Image.open(out2).size == (150, 50)


def test_cli_bad_max_side_one_line_exit_2(tmp_path, capsys):
    src = tmp_path / "photo.png"
    save_png(src, textured(40, 40))
    assert main(["render", str(src), "-o", str(tmp_path / "o.png"), "--depth", "approximate",
                 "--max-side", "50"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: processing size") and "\n" not in err


def test_decode_upload_corrupt_and_valid(tmp_path):
    bad = tmp_path / "not_a_photo.png"
    bad.write_bytes(b"this is not an image at all")
    with pytest.raises(MagicBokehError, match="not a supported image") as info:
        processing.decode_upload(str(bad))
    assert "'not_a_photo.png'" in str(info.value) and str(tmp_path) not in str(info.value)
    with pytest.raises(MagicBokehError, match="not a supported image"):
        processing.decode_upload(b"\x89PNG\r\n\x1a\n truncated")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(MagicBokehError, match="empty"):
        processing.decode_upload(str(empty))
    with pytest.raises(MagicBokehError, match="no photo"):
        processing.decode_upload(None)
    good = tmp_path / "ok.png"
    save_png(good, textured(32, 48))
    assert processing.decode_upload(str(good)).size == (48, 32)

    class FileData:  # what gradio hands a handler for gr.File / gr.Image(type="filepath") uploads
        path = str(good)

    assert processing.decode_upload(FileData()).size == (48, 32)
