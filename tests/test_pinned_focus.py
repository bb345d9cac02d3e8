"""Pinned focus and defocus rules of the official MagicBokeh inference (no ../shared needed).

Each expected value is written here in closed form from ``../shared/reference/official-model.md``
§1.2 (mask focus: median of the 8-bit disparity over mask pixels >= 1, lower middle element, 0 when
empty; defocus ``|d - f| * K / 32``; in focus when defocus <= 0.1). The fixtures are small inline
maps whose soft masks make the threshold matter: a "> 127" or "mean of the two middles" rule gives a
different number, so the tests fail on it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import textured
from magicbokeh import focus
from magicbokeh.pipeline import Focus, RenderSettings, render

# Disparities chosen off the 8-bit grid, so truncation (floor) and rounding give different levels.
SOFT_D = 50.7 / 255  # under the faint (1..127) part of the mask
HARD_D = 200.6 / 255  # under the solid (> 127) part


def _soft_mask_scene(h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A disparity map and an 8-bit soft mask: 30 faint pixels (values 1..127) at SOFT_D and
    20 solid pixels (128..255) at HARD_D; everything else is background (mask 0) at 0.9."""
    disp = np.full((h, w), 0.9, np.float32)
    mask = np.zeros((h, w), np.uint8)
    faint = [(r, c) for r in range(2, 5) for c in range(10, 20)]  # 30 pixels
    solid = [(r, c) for r in range(20, 22) for c in range(30, 40)]  # 20 pixels
    for i, (r, c) in enumerate(faint):
        mask[r, c] = [1, 2, 64, 127][i % 4]
        disp[r, c] = SOFT_D
    for i, (r, c) in enumerate(solid):
        mask[r, c] = [128, 200, 255][i % 3]
        disp[r, c] = HARD_D
    disp[0, 0], disp[-1, -1] = 0.0, 1.0  # full [0, 1] range: min-max normalisation is the identity
    return disp, mask


def test_every_non_zero_mask_pixel_counts_not_only_those_above_127() -> None:
    disp, mask = _soft_mask_scene()
    # 30 faint + 20 solid pixels: the median over all non-zero pixels is the faint disparity;
    # counting only pixels > 127 (or > 0.5 of 255) would give the solid one.
    assert focus.focus_from_mask(disp, mask) == pytest.approx(SOFT_D, abs=1e-7)
    # The 8-bit (parity) value truncates: floor(50.7) = 50, not round() = 51.
    assert focus.focus_from_mask(disp, mask, parity=True) == pytest.approx(50 / 255, abs=1e-7)
    # A mask value of exactly 1 is enough: only faint pixels of value 1 -> still the faint plane.
    only_ones = np.where(mask == 1, 1, 0).astype(np.uint8)
    assert focus.focus_from_mask(disp, only_ones) == pytest.approx(SOFT_D, abs=1e-7)
    # Float masks in [0, 1] (what load_map gives for an 8-bit PNG) follow the same rule.
    assert focus.focus_from_mask(disp, mask.astype(np.float32) / 255) == pytest.approx(SOFT_D, abs=1e-7)


def test_even_count_takes_the_lower_middle_and_empty_mask_gives_zero() -> None:
    disp = np.array([[0.1, 0.3, 0.7, 0.5, 0.95, 0.05]], np.float32)
    mask = np.array([[1, 1, 1, 1, 0, 0]], np.uint8)
    # torch.median on [0.1, 0.3, 0.5, 0.7] is 0.3 (lower middle), not the mean 0.4.
    assert focus.focus_from_mask(disp, mask) == pytest.approx(0.3, abs=1e-7)
    odd = np.array([[1, 1, 1, 0, 0, 0]], np.uint8)  # [0.1, 0.3, 0.7] -> 0.3
    assert focus.focus_from_mask(disp, odd) == pytest.approx(0.3, abs=1e-7)
    assert focus.focus_from_mask(disp, np.zeros_like(mask)) == 0.0


def test_point_parity_is_the_truncated_8bit_value_at_exactly_that_pixel() -> None:
    disp = np.full((9, 9), 0.2, np.float32)
    disp[4, 6] = 100.99 / 255
    assert focus.focus_from_point(disp, 6, 4, parity=True) == pytest.approx(100 / 255, abs=1e-7)
    assert focus.quantise_disparity_8bit(np.array([[254.999 / 255, 1.0, 0.0]], np.float32)).tolist() == [
        [pytest.approx(254 / 255), 1.0, 0.0]
    ]


@pytest.mark.parametrize("k", [1.0, 8.0, 20.0, 31.0])
def test_defocus_map_in_closed_form_at_k_other_than_32(k: float) -> None:
    d = np.linspace(0.0, 1.0, 101, dtype=np.float32).reshape(1, -1)
    f = 0.37
    expected = np.abs(d.astype(np.float64) - f) * k / 32.0
    got = focus.defocus_map(d, f, k)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    # In focus exactly where |d - f| <= 3.2 / K (defocus <= 0.1).
    inside = np.abs(d.astype(np.float64) - f) <= 3.2 / k
    margin = np.abs(np.abs(d.astype(np.float64) - f) - 3.2 / k) > 1e-5  # away from the float edge
    np.testing.assert_array_equal(focus.in_focus_mask(got)[margin], inside[margin])


def test_focal_range_shrinks_the_distance_by_half_the_range() -> None:
    d = np.array([[0.1, 0.3, 0.5, 0.55, 0.9]], np.float32)
    got = focus.defocus_map(d, 0.5, 16.0, focal_range=0.2)
    expected = np.maximum(np.abs(d.astype(np.float64) - 0.5) - 0.1, 0.0) * 0.5
    np.testing.assert_allclose(got, expected, atol=1e-7)
    coc = focus.signed_coc_radius_px(d, 0.5, 16.0, focal_range=0.2)
    np.testing.assert_allclose(coc, np.sign(d - 0.5) * np.maximum(np.abs(d - 0.5) - 0.1, 0) * 16.0, atol=1e-6)


def test_render_with_a_soft_mask_png_uses_the_official_rule_end_to_end(tmp_path) -> None:
    """Through the public render(): mask file -> focus -> defocus map, at K = 12."""
    disp, mask = _soft_mask_scene()
    mask_path = tmp_path / "mask.png"
    assert cv2.imwrite(str(mask_path), mask)
    photo = (textured(*disp.shape, seed=3) * 255).astype(np.uint8)
    k = 12.0
    res = render(photo, depth=disp, focus=Focus.mask(str(mask_path), parity=True),
                 settings=RenderSettings(k=k, backend="classical"))
    f = 50 / 255  # truncated 8-bit median over the 50 non-zero pixels (30 faint ones win)
    assert res.focus_disparity == pytest.approx(f, abs=1e-6)
    np.testing.assert_allclose(res.defocus, np.abs(disp.astype(np.float64) - f) * k / 32.0, atol=2e-6)
    np.testing.assert_array_equal(res.in_focus, np.abs(disp.astype(np.float64) - f) * k / 32.0 <= 0.1)
