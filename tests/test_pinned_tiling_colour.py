"""Pinned tiling, blending, AdaIN colour fix and point-focus window (no ../shared needed).

References written here: ``official-model.md`` §1.5 (512 px tiles at stride 256; an extra bottom
row / right column at ``H - 512`` only when ``H % 256 != 0``; blend profiles ramp
``linspace(1, 0, 256)`` out and ``linspace(0, 1, 256)`` in), §1.2 step 12 (per-channel AdaIN with the
unbiased variance of ``torch.var`` + 1e-5, clamped to [0, 1]) and the documented 7x7 median of the
robust point focus (docs/app.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magicbokeh import focus
from magicbokeh.diffusion.color_fix import adain_color_fix
from magicbokeh.diffusion.tiling import tile_count, tile_positions, tile_weight


def _naive_starts(n: int) -> list[int]:
    starts = [i for i in range(0, n, 256) if i + 512 <= n]
    return starts + ([n - 512] if n % 256 else [])


@pytest.mark.parametrize(("h", "w", "tiles"), [
    (1024, 1562, 18), (1024, 1564, 18), (3024, 4032, 165), (512, 512, 1), (600, 800, 6),
])
def test_documented_tile_counts(h: int, w: int, tiles: int) -> None:
    assert tile_count(h, w) == tiles
    assert len(tile_positions(h, w)) == tiles


@pytest.mark.parametrize("n", [512, 513, 700, 767, 768, 769, 1024, 1280, 1300, 1536, 2048, 2049])
def test_tile_positions_follow_the_official_rule(n: int) -> None:
    expected = {(t, l) for t in _naive_starts(n) for l in _naive_starts(768)}
    got = tile_positions(n, 768)
    assert set(got) == expected and len(got) == len(expected)  # no duplicates
    assert tile_count(n, 768) == len(expected)


def _naive_profile(start: int, size: int) -> np.ndarray:
    p = np.ones(512)
    if start < size - 512:
        p[-256:] = np.linspace(1, 0, 256)
    if start > 0:
        p[:256] = np.linspace(0, 1, 256)
    return p


@pytest.mark.parametrize(("top", "left", "h", "w"), [
    (0, 0, 512, 512), (0, 0, 1024, 1562), (256, 512, 1024, 1562), (512, 1050, 1024, 1562), (88, 0, 600, 800),
])
def test_blend_weight_is_the_outer_product_of_official_ramps(top, left, h, w) -> None:
    expected = np.outer(_naive_profile(top, h), _naive_profile(left, w))
    np.testing.assert_allclose(tile_weight(top, left, h, w), expected, atol=1e-6)


def _naive_adain(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    t = target.reshape(target.shape[0], -1).astype(np.float64)
    s = source.reshape(source.shape[0], -1).astype(np.float64)
    t_std = np.sqrt(t.var(axis=1, ddof=1) + 1e-5)
    s_std = np.sqrt(s.var(axis=1, ddof=1) + 1e-5)
    out = (target - t.mean(1)[:, None, None]) / t_std[:, None, None] * s_std[:, None, None] + s.mean(1)[:, None, None]
    return np.clip(out, 0.0, 1.0)


def test_adain_uses_unbiased_variance_plus_1e5_per_channel() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(0.2, 0.8, (3, 3, 4))  # 12 pixels: unbiased vs biased differ by 9 %
    source = rng.uniform(0.1, 0.6, (3, 3, 4))
    source[2] = 0.3  # a flat channel: its std is sqrt(1e-5), so the eps shows
    got = adain_color_fix(torch.from_numpy(target).float(), torch.from_numpy(source).float()).numpy()
    np.testing.assert_allclose(got, _naive_adain(target, source), atol=1e-6)
    biased = target.reshape(3, -1).var(axis=1, ddof=0)
    assert np.abs(np.sqrt(biased + 1e-5) - np.sqrt(target.reshape(3, -1).var(axis=1, ddof=1) + 1e-5)).max() > 1e-3


def test_robust_point_focus_is_the_median_of_a_7x7_window() -> None:
    yy, xx = np.mgrid[0:20, 0:20]
    ring = np.maximum(np.abs(yy - 10), np.abs(xx - 10))  # Chebyshev distance from (10, 10)
    disp = np.select([ring == 0, ring <= 2, ring == 3], [0.9, 0.2, 0.9], 0.1).astype(np.float32)
    disp[0, 1] = 0.7  # the corner window holds more than one value
    # 5x5: 24 x 0.2 + 1 x 0.9 -> 0.2; 7x7: + 24 x 0.9 -> 0.9; 9x9: + 32 x 0.1 -> 0.2.
    window = disp[7:14, 7:14]
    assert focus.focus_from_point(disp, 10, 10) == pytest.approx(float(np.median(window)))
    assert float(np.median(window)) != pytest.approx(float(np.median(disp[8:13, 8:13])))
    assert float(np.median(window)) != pytest.approx(float(np.median(disp[6:15, 6:15])))
    # Clipped at the border: the window of (0, 0) is the 4x4 corner.
    assert focus.focus_from_point(disp, 0, 0) == pytest.approx(float(np.median(disp[0:4, 0:4])))
