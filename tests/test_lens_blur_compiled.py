"""The compiled compositor of the classical renderer against its plain NumPy/OpenCV reference.

The compiled path (magicbokeh.lens_blur_compiled: row-difference scatter in bands, Numba) and the
reference (magicbokeh.lens_blur_reference: one dense convolution per layer, OpenCV) implement the
same layered compositing; they must agree to float rounding on every kind of layer: full
resolution and coarse grid, grouped coarse layers, hidden-surface fills, asymmetric apertures,
odd frame sizes and image borders. The compiled twins of the layer rules (occlusion bits, radius
split, hidden bands, layer light) must equal their NumPy versions exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

pytest.importorskip("numba")

from magicbokeh import lens_blur, lens_blur_compiled, lens_blur_reference  # noqa: E402
from magicbokeh.colour import linear_to_srgb, srgb_to_linear  # noqa: E402
from magicbokeh.lens_blur_compiled_colour import decode_rows, finish_rows  # noqa: E402
from magicbokeh.lens_blur_compiled_layers import COMPILED_RULES  # noqa: E402
from magicbokeh.apertures import DiskAperture, PolygonAperture  # noqa: E402
from magicbokeh.lens_blur import render_lens_blur, srgb_to_linear_fast  # noqa: E402
from magicbokeh.lens_blur_layers import (  # noqa: E402
    GROUP_RADIUS_FRACTION,
    build_layers,
    composite_groups,
    occlusion_bits,
    split_radius,
)


def scene(kind: str, h: int = 90, w: int = 134, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(linear colour, signed CoC radius px at K = 32, focus 0.5) of a small test scene."""
    rng = np.random.default_rng(seed)
    colour = cv2.resize(rng.random((h // 6 + 1, w // 6 + 1, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    colour = srgb_to_linear_fast(np.clip(colour, 0, 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    blobs = cv2.resize(rng.random((5, 5)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    disparity = {
        "wavy": np.clip(yy / h + 0.04 * np.sin(xx / 7.0), 0, 1),
        "cluttered": blobs,
        "terraced": np.round(blobs * 8) / 8,
        "occluder": np.where((yy > h / 3) & (xx > w / 4) & (xx < 3 * w / 4), 0.95, 0.1 + 0.2 * yy / h),
    }[kind]
    return colour, (32.0 * (disparity.astype(np.float32) - 0.5)).astype(np.float32)


def both(layers, aperture, half_res: float, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    ref = lens_blur_reference.composite_layers(layers, aperture, half_res)
    fast = lens_blur_compiled.composite_layers(layers, aperture, half_res, threads=threads)
    return ref, fast


@pytest.mark.parametrize("kind", ["wavy", "cluttered", "terraced", "occluder"])
@pytest.mark.parametrize("half_res", [6.0, 3.0, math.inf], ids=["coarse-from-6", "coarse-from-3", "all-full-res"])
def test_compiled_equals_reference(kind, half_res):
    colour, radius = scene(kind)
    layers = build_layers(radius, colour, fill_hidden=True, rules=COMPILED_RULES, threads=2)
    if kind in ("terraced", "occluder"):
        assert layers.fills, "the scene must exercise the hidden-surface fill"
    ref, fast = both(layers, DiskAperture(), half_res)
    assert ref[..., 3].max() > 0.5
    np.testing.assert_allclose(fast, ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("aperture", [PolygonAperture(5, 17.0), PolygonAperture(6, 0.0)], ids=["pentagon", "hexagon"])
def test_compiled_spreads_light_in_the_aperture_orientation(aperture):
    """A pentagon is not symmetric under a half turn: a flipped kernel would differ."""
    colour, radius = scene("occluder", 70, 96, seed=2)
    layers = build_layers(radius, colour, fill_hidden=True, rules=COMPILED_RULES)
    ref, fast = both(layers, aperture, 6.0)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("shape", [(37, 53), (65, 129), (130, 71), (1, 40), (40, 1)])
def test_compiled_equals_reference_at_odd_sizes_and_borders(shape):
    """Odd sizes pad the coarse grid; every layer touches the image border; bands end mid-frame."""
    h, w = shape
    rng = np.random.default_rng(h * 1000 + w)
    colour = rng.random((h, w, 3)).astype(np.float32)
    disparity = cv2.resize(rng.random((4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    disparity[h // 3 : h // 2 + 1, w // 4 : w // 2 + 1] = 0.95
    layers = build_layers((30.0 * (disparity - 0.4)).astype(np.float32), colour, fill_hidden=True, rules=COMPILED_RULES)
    for half_res in (4.0, 6.0):
        ref, fast = both(layers, DiskAperture(), half_res)
        np.testing.assert_allclose(fast, ref, rtol=0, atol=2e-5)


def test_result_does_not_depend_on_the_thread_count():
    colour, radius = scene("terraced", 150, 120)
    layers = build_layers(radius, colour, fill_hidden=True, rules=COMPILED_RULES)
    one = lens_blur_compiled.composite_layers(layers, DiskAperture(), 6.0, threads=1)
    for threads in (2, 3):
        assert np.array_equal(lens_blur_compiled.composite_layers(layers, DiskAperture(), 6.0, threads=threads), one)
    img = np.clip(np.random.default_rng(1).random((150, 120, 3)), 0, 1).astype(np.float32)
    disp = (radius / 32.0 + 0.5).astype(np.float32)
    outs = [render_lens_blur(img, disp, 0.5, 32, threads=t) for t in (1, 2, 4)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("kind", ["wavy", "cluttered", "terraced", "occluder"])
def test_compiled_layer_rules_equal_the_numpy_rules(kind):
    colour, radius = scene(kind, 80, 112)
    plain = build_layers(radius, colour, fill_hidden=True)
    fast = build_layers(radius, colour, fill_hidden=True, rules=COMPILED_RULES, threads=3)
    assert np.array_equal(plain.lower, fast.lower)
    assert np.array_equal(plain.frac, fast.frac)
    assert np.array_equal(plain.occlusion_bits, fast.occlusion_bits)
    assert sorted(plain.fills) == sorted(fast.fills)
    for layer, items in plain.fills.items():
        assert np.array_equal(items.ys, fast.fills[layer].ys)
        assert np.array_equal(items.xs, fast.fills[layer].xs)
        np.testing.assert_allclose(fast.fills[layer].values, items.values, rtol=0, atol=1e-6)


def test_occlusion_bits_follow_the_widening_rule():
    """Bit L - floor(r) + 2 is set where a 3 x 3 neighbour (or the pixel) lies in layer L and L is
    within 2 of the pixel's own floor: checked against a direct loop on a random layer map."""
    rng = np.random.default_rng(3)
    lower = rng.integers(-6, 6, size=(17, 23)).astype(np.int32)
    bits = occlusion_bits(lower)
    for y in range(17):
        for x in range(23):
            want = 0
            for yy in range(max(y - 1, 0), min(y + 2, 17)):
                for xx in range(max(x - 1, 0), min(x + 2, 23)):
                    d = int(lower[yy, xx]) - int(lower[y, x])
                    if abs(d) <= 2:
                        want |= 1 << (d + 2)
            assert bits[y, x] == want


def test_split_radius_shares():
    radius = np.array([[-3.25, -3.0, 0.0, 0.75, 31.5]], np.float32)
    lower, frac = split_radius(radius)
    assert lower.tolist() == [[-4, -3, 0, 0, 31]]
    np.testing.assert_allclose(frac, [[0.75, 0.0, 0.0, 0.75, 0.5]])


@pytest.mark.parametrize("radius", [0, 1, 2.5, 7, 16, 32])
@pytest.mark.parametrize("aperture", [DiskAperture(), PolygonAperture(5, 17.0)], ids=["disc", "pentagon"])
def test_row_differences_rebuild_the_kernel(radius, aperture):
    """The taps the compiled code scatters, summed along each row, are the aperture kernel."""
    width = 80
    kernel = aperture.kernel(float(radius))
    table = lens_blur_compiled._KernelTable(_FixedKernel(kernel), [[1]], math.inf, width)
    h = table.half[0]
    rebuilt = np.zeros((2 * h + 1, table.stride), np.float64)
    centre = h * table.stride + table.pad + 20
    for ky in range(2 * h + 1):
        for e in range(table.row_start[0, ky], table.row_start[0, ky + 1]):
            flat = centre + table.offset[e]
            rebuilt[flat // table.stride, flat % table.stride] += table.value[e]
    rows = np.cumsum(rebuilt, axis=1)[:, table.pad + 20 - h : table.pad + 20 + h + 1]
    np.testing.assert_allclose(rows, kernel, rtol=0, atol=1e-6)


class _FixedKernel:
    """An aperture whose kernel is given (to test the table on any kernel)."""

    def __init__(self, kernel: np.ndarray) -> None:
        self._kernel = kernel

    def kernel(self, radius_px: float) -> np.ndarray:
        return self._kernel


def test_composite_groups_cover_every_layer_once_near_to_far():
    fills = {-20, 9}
    groups = composite_groups(-33, 17, 6.0, fills)
    order = [layer for group in groups for layer in group]
    assert order == list(range(17, -34, -1))
    for group in groups:
        radii = [abs(layer) for layer in group]
        if len(group) > 1:
            assert min(radii) >= 6  # full-resolution layers are composited alone
            assert len({layer > 0 for layer in group}) == 1  # one side of the focal plane
            assert max(radii) - min(radii) + 1 <= min(radii) * GROUP_RADIUS_FRACTION
            assert not fills & set(group)
    assert [-20] in groups and [9] in groups
    assert all(len(g) == 1 for g in composite_groups(-33, 17, math.inf))


def test_render_engines_agree_end_to_end():
    colour, radius = scene("occluder", 80, 100)
    image = np.clip(np.random.default_rng(5).random((80, 100, 3)), 0, 1).astype(np.float32)
    disp = (radius / 32.0 + 0.5).astype(np.float32)
    for boost in (False, True):
        ref = render_lens_blur(image, disp, 0.5, 32, engine="reference", highlight_boost=boost)
        fast = render_lens_blur(image, disp, 0.5, 32, engine="compiled", highlight_boost=boost)
        np.testing.assert_allclose(fast, ref, rtol=0, atol=2e-3)
        assert np.abs(fast - ref).mean() < 1e-5


def test_compiled_colour_passes_follow_the_srgb_curves():
    rng = np.random.default_rng(11)
    # Every 16-bit level, the curves' knees and ends, and random values.
    srgb = np.concatenate([np.arange(65536) / 65535.0, [0.04045, 0.0404, 0.0031308, 1e-9]])
    srgb = np.concatenate([srgb, rng.random(srgb.size)]).astype(np.float32)
    image = np.repeat(srgb[None, :, None], 3, axis=2)
    linear = np.empty_like(image)
    decode_rows(image, linear, 0, 1)
    np.testing.assert_allclose(linear, srgb_to_linear(image.astype(np.float64)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(linear, srgb_to_linear_fast(image), rtol=0, atol=1e-6)

    # Premultiplied colour over coverage, encoded; nothing landed -> the input's own colour.
    coverage = np.concatenate([rng.random(srgb.size - 2) * 3 + 1e-3, [0.0, 1e-7]]).astype(np.float32)
    wanted = np.linspace(-0.01, 1.2, srgb.size, dtype=np.float32)  # outside [0, 1] is clipped
    colour = np.empty((1, srgb.size, 4), np.float32)
    colour[0, :, :3] = (wanted * coverage)[:, None]
    colour[0, :, 3] = coverage
    out = np.empty_like(image)
    finish_rows(colour, linear, out)
    expected = linear_to_srgb(np.clip(wanted, 0, None)[None, :, None].astype(np.float64)).repeat(3, axis=2)
    expected[0, -2:] = image[0, -2:]  # where nothing landed, the input comes back
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)
    np.testing.assert_allclose(out, lens_blur._finish(colour, linear), rtol=0, atol=2e-6)


def test_without_numba_the_reference_path_runs(monkeypatch, caplog):
    colour, radius = scene("wavy", 40, 50)
    image = np.clip(colour, 0, 1)
    disp = (radius / 32.0 + 0.5).astype(np.float32)
    fast = render_lens_blur(image, disp, 0.5, 32)
    monkeypatch.setattr(lens_blur, "compiled_available", lambda: False)
    with caplog.at_level("WARNING"):
        slow = render_lens_blur(image, disp, 0.5, 32)
    assert "numba is not installed" in caplog.text
    np.testing.assert_allclose(slow, fast, rtol=0, atol=2e-3)


def test_bad_engine_options_are_refused():
    img = np.zeros((8, 8, 3), np.float32)
    disp = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="engine must be one of"):
        render_lens_blur(img, disp, 0.5, 8, engine="gpu")
    with pytest.raises(ValueError, match="half_res_radius_px must be positive"):
        render_lens_blur(img, disp, 0.5, 8, half_res_radius_px=0)


def test_warm_up_renders():
    assert lens_blur.warm_up_renderer() > 0.0
