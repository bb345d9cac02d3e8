"""Focus math: the official conventions (normalisation, 8-bit parity, mask median, threshold)."""

import numpy as np
import pytest

from magicbokeh.errors import MagicBokehError
from magicbokeh.focus import (
    check_k,
    defocus_map,
    focus_from_mask,
    focus_from_point,
    in_focus_mask,
    model_condition,
    normalise_disparity,
    quantise_disparity_8bit,
    signed_coc_radius_px,
)


def test_normalise_maps_to_unit_range_with_near_as_one():
    raw = np.array([[2.0, 4.0], [6.0, 10.0]], np.float32)
    d = normalise_disparity(raw)
    assert d.dtype == np.float32
    assert d.min() == 0.0 and d.max() == pytest.approx(1.0, abs=1e-6)
    assert d[1, 1] > d[0, 0]  # larger raw disparity stays nearer


def test_constant_disparity_does_not_divide_by_zero():
    d = normalise_disparity(np.full((5, 7), 3.0, np.float32))
    assert np.all(np.isfinite(d)) and np.all(d == 0.0)


def test_nan_disparity_rejected():
    raw = np.ones((4, 4), np.float32)
    raw[1, 2] = np.nan
    with pytest.raises(MagicBokehError, match="NaN"):
        normalise_disparity(raw)


def test_8bit_quantisation_truncates_like_the_official_code():
    d = np.linspace(0, 1, 1001, dtype=np.float32)
    q = quantise_disparity_8bit(d)
    levels = q * 255
    assert np.allclose(levels, np.round(levels), atol=1e-4)  # on the 8-bit grid
    assert np.all(q <= d + 1e-7)  # never rounds up
    assert np.all(d - q < 1 / 255 + 1e-6)
    assert quantise_disparity_8bit(np.float32([0.999]))[0] == pytest.approx(254 / 255)


def test_point_focus_robust_median_vs_exact_parity():
    disp = np.full((20, 20), 0.5, np.float32)
    disp[10, 10] = 0.9  # a single noisy pixel under the click
    assert focus_from_point(disp, 10, 10) == pytest.approx(0.5)
    assert focus_from_point(disp, 10, 10, parity=True) == pytest.approx(229 / 255)


def test_point_focus_outside_image_rejected():
    disp = np.zeros((10, 20), np.float32)
    with pytest.raises(MagicBokehError, match="outside the 20x10 image"):
        focus_from_point(disp, 20, 3)
    with pytest.raises(MagicBokehError):
        focus_from_point(disp, 3, -1)


def test_mask_focus_uses_nonzero_pixels_and_lower_median():
    disp = np.array([[0.1, 0.2, 0.3, 0.4, 0.9]], np.float32)
    mask = np.array([[1, 255, 128, 7, 0]], np.uint8)  # any non-zero counts, as mask >= 1/255
    assert focus_from_mask(disp, mask) == pytest.approx(0.2)  # lower middle of 4 values
    assert focus_from_mask(disp, np.zeros_like(mask)) == 0.0  # empty mask -> farthest plane


def test_defocus_and_in_focus_threshold():
    disp = np.array([0.5, 0.59, 0.61, 1.0], np.float32)
    defocus = defocus_map(disp, 0.5, 32)
    assert np.allclose(defocus, np.abs(disp - 0.5))
    assert in_focus_mask(defocus).tolist() == [True, True, False, False]
    # K <= 3.2 puts everything in focus (|d - f| <= 1).
    assert in_focus_mask(defocus_map(disp, 0.0, 3.2)).all()


def test_focal_range_shrinks_defocus_and_coc():
    disp = np.array([0.5, 0.55, 0.7, 0.3], np.float32)
    r = signed_coc_radius_px(disp, 0.5, 20, focal_range=0.2)
    assert r.tolist() == pytest.approx([0.0, 0.0, 2.0, -2.0], abs=1e-5)
    assert defocus_map(disp, 0.5, 32, focal_range=0.2).tolist() == pytest.approx([0, 0, 0.1, 0.1], abs=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 32.5, float("nan"), "x"])
def test_k_outside_range_rejected(bad):
    with pytest.raises(MagicBokehError, match="K"):
        check_k(bad)


def _official_condition(disparity: np.ndarray, focus: float, k: float):
    """Naive re-implementation of the official inference.py steps 2, 7 and 9 (float32 throughout)."""
    depth_u8 = (disparity.astype(np.float32) * 255).astype(np.uint8)  # np.load(...) * 255 -> uint8
    depth = depth_u8.astype(np.float32) / np.float32(255)  # ToTensor of the L image
    focus_q = np.float32(np.uint8(np.float32(focus) * np.float32(255))) / np.float32(255)
    disp_k = np.abs(depth - focus_q) * np.float32(k / 32)
    return disp_k, ~(disp_k > 0.1), float(focus_q)


@pytest.mark.parametrize("k", [0.0, 3.0, 7.5, 32.0])
def test_model_condition_equals_the_official_steps_bit_for_bit(k):
    rng = np.random.default_rng(5)
    disparity = rng.random((37, 53), dtype=np.float32)
    disparity[0, :4] = [0.0, 1.0, 0.5, 254.9999 / 255]  # edges of the truncation
    focus = float(disparity[10, 20])
    defocus, in_focus, f = model_condition(disparity, focus, k)
    ref_defocus, ref_in_focus, ref_f = _official_condition(disparity, focus, k)
    assert defocus.dtype == np.float32 and in_focus.dtype == bool
    assert f == ref_f
    assert np.array_equal(defocus, ref_defocus)
    assert np.array_equal(in_focus, ref_in_focus)
    if k <= 3.2:  # |d - f| <= 1 <= 3.2 / K: everything is in focus
        assert in_focus.all()


def test_model_condition_without_quantisation_and_with_focal_range():
    disparity = np.array([[0.0, 0.3, 0.5, 0.9]], np.float32)
    defocus, in_focus, f = model_condition(disparity, 0.5, 16.0, quantize=False)
    assert f == 0.5
    assert np.allclose(defocus, [[0.25, 0.1, 0.0, 0.2]], atol=1e-7)  # |d - 0.5| * 16 / 32
    assert in_focus.tolist() == [[False, True, True, False]]
    wide, _, _ = model_condition(disparity, 0.5, 16.0, quantize=False, focal_range=0.4)
    assert np.allclose(wide, [[0.15, 0.0, 0.0, 0.1]], atol=1e-7)  # band of +-0.2 stays sharp
