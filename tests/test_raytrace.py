"""Thin-lens ray tracer: physical properties on tiny layered scenes."""

from __future__ import annotations

import numpy as np
import pytest

from magicbokeh.colour import srgb_to_linear
from magicbokeh.data.raytrace import Layer, aperture_samples, composite_sharp, render_thin_lens
from magicbokeh.errors import MagicBokehError


def _plane(h: int, w: int, rgb, alpha: float = 1.0) -> np.ndarray:
    out = np.zeros((h, w, 4), np.float32)
    out[..., :3] = rgb
    out[..., 3] = alpha
    return out


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.ones((h, w, 4), np.float32)
    out[..., :3] = rng.uniform(0.1, 0.9, (h, w, 3))
    return out


def _two_layer_scene(h: int = 48, w: int = 48):
    """Textured background at d = 0.2 and a red square (complete layer) at d = 0.8."""
    bg = Layer(_textured(h, w, 1), 0.2)
    fg_rgba = _plane(h, w, (0.9, 0.1, 0.1), 0.0)
    fg_rgba[16:32, 16:32, 3] = 1.0
    return [bg, Layer(fg_rgba, 0.8)]


def test_k_zero_equals_sharp_composite():
    layers = _two_layer_scene()
    slanted = np.linspace(0.0, 0.3, 48, dtype=np.float32)[None, :].repeat(48, 0)
    layers[0] = Layer(layers[0].rgba, slanted)
    sharp = composite_sharp(layers)
    np.testing.assert_allclose(render_thin_lens(layers, 0.5, 0.0), sharp, atol=1e-6)
    # The sharp composite puts the opaque square over the background.
    np.testing.assert_allclose(sharp[20, 20], [0.9, 0.1, 0.1], atol=1e-5)
    np.testing.assert_allclose(sharp[5, 5], layers[0].rgba[5, 5, :3], atol=1e-5)


def test_focal_layer_unchanged_outside_blurred_occluder():
    layers = _two_layer_scene()
    k = 10.0  # square blurred by 10 * 0.6 = 6 px
    out = render_thin_lens(layers, 0.2, k)
    bg = layers[0].rgba[..., :3]
    far = np.ones((48, 48), bool)
    far[16 - 8 : 32 + 8, 16 - 8 : 32 + 8] = False  # the square dilated by its CoC (+ filter margin)
    np.testing.assert_allclose(out[far], bg[far], atol=2e-5)
    assert np.abs(out[~far] - bg[~far]).max() > 0.1  # and the blurred square did cover the rest


@pytest.mark.parametrize("d, f, k", [(0.9, 0.3, 16.0), (0.0, 0.5, 20.0), (0.6, 0.4, 12.0)])
def test_point_light_becomes_disc_of_coc_radius(d, f, k):
    n = 61
    rgba = _plane(n, n, 0.0)
    rgba[30, 30, :3] = 1.0
    out = srgb_to_linear(render_thin_lens([Layer(rgba, d)], f, k))[..., 1]
    radius = k * abs(d - f)
    above = out >= 0.5 * out.max()
    measured = np.sqrt(above.sum() / np.pi)
    assert abs(measured - radius) <= 1.0, (measured, radius)
    ys, xs = np.nonzero(above)
    assert abs(ys.mean() - 30) < 0.5 and abs(xs.mean() - 30) < 0.5  # centred on the source


def test_energy_conserved_in_linear_light():
    n = 64
    rng = np.random.default_rng(3)
    rgba = _plane(n, n, 0.0)
    rgba[20:44, 20:44, :3] = rng.uniform(0.0, 1.0, (24, 24, 3))  # black margin: nothing leaves the frame
    before = srgb_to_linear(rgba[..., :3]).sum()
    after = srgb_to_linear(render_thin_lens([Layer(rgba, 0.9)], 0.2, 12.0)).sum()  # 8.4 px CoC
    assert abs(after - before) / before < 0.01


def test_blurred_foreground_edge_reveals_background():
    h, w = 40, 40
    bg = Layer(_plane(h, w, (0.0, 0.0, 1.0)), 0.0)  # blue, in focus
    fg_rgba = _plane(h, w, (1.0, 0.0, 0.0), 0.0)
    fg_rgba[:, 20:, 3] = 1.0  # red half-plane, right side
    out = render_thin_lens([bg, Layer(fg_rgba, 1.0)], 0.0, 8.0)  # 8 px CoC on the red edge
    # Just inside the red edge, the blurred rim is semi-transparent: blue shows through.
    inside = out[20, 22]
    assert inside[2] > 0.3 and inside[0] > 0.3
    # Far inside the red, only red; far outside, only blue.
    np.testing.assert_allclose(out[20, 36], [1, 0, 0], atol=1e-3)
    np.testing.assert_allclose(out[20, 4], [0, 0, 1], atol=1e-3)
    # A rim that kept only the red's own colour (no background) would be pure red at half coverage.
    assert not np.allclose(inside, [1, 0, 0], atol=0.05)


def test_deterministic_and_samples_symmetric():
    layers = _two_layer_scene()
    a = render_thin_lens(layers, 0.5, 20.0)
    b = render_thin_lens(layers, 0.5, 20.0)
    assert np.array_equal(a, b)
    pts = aperture_samples(101)
    assert len(pts) == 102
    np.testing.assert_allclose(pts.mean(axis=0), 0.0, atol=1e-6)
    assert np.all(np.hypot(pts[:, 0], pts[:, 1]) <= 1.0)


def test_bad_input_is_reported():
    with pytest.raises(MagicBokehError, match="at least one layer"):
        render_thin_lens([], 0.5, 4.0)
    with pytest.raises(MagicBokehError, match="same size"):
        render_thin_lens([Layer(_plane(8, 8, 0.5), 0.1), Layer(_plane(9, 8, 0.5), 0.2)], 0.5, 4.0)
    with pytest.raises(MagicBokehError, match=">= 0"):
        render_thin_lens([Layer(_plane(8, 8, 0.5), 0.1)], 0.5, -1.0)


def test_cutout_window_shortcut_matches_full_frame(monkeypatch):
    import magicbokeh.data.raytrace as rt

    layers = _two_layer_scene()
    fast = render_thin_lens(layers, 0.2, 16.0)
    monkeypatch.setattr(rt, "_support", lambda alpha: None)  # force the full-frame path
    np.testing.assert_allclose(render_thin_lens(layers, 0.2, 16.0), fast, atol=1e-5)


def test_capped_samples_match_dense_reference():
    # Default rendering caps the sample count and pre-filters; a dense render (0.5 px spacing, no
    # pre-filter) is the reference. Focus on the square: the background blurs by 19 px behind its edge.
    from magicbokeh.data.raytrace import MAX_SAMPLES, sample_count

    layers = _two_layer_scene()
    assert sample_count(32.0 * 0.6) > MAX_SAMPLES  # the default path really is the capped one
    fast = render_thin_lens(layers, 0.8, 32.0)
    dense = render_thin_lens(layers, 0.8, 32.0, samples=sample_count(32.0 * 0.6))
    assert np.abs(fast - dense).mean() < 0.01
    assert np.abs(fast - dense).max() < 0.08
