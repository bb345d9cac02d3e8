"""The compiled paths of the classical renderer against independent references.

* ``sparse_convolve`` (row-span scatter) against OpenCV's ``filter2D`` with the flipped kernel and
  zero borders, on random sparse layers that touch every image border.
* ``render_lens_blur`` with the compiled paths against the renderer with them switched off (NumPy
  scatter, filter2D for every layer): the layer scatter must agree bit for bit, the sparse
  convolution within float rounding.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from magicbokeh import lens_blur
from magicbokeh.apertures import DiskAperture, PolygonAperture
from magicbokeh.lens_blur import render_lens_blur
from magicbokeh.sparse_blur import estimate_nonzero_pixels, kernel_runs, nonzero_pixels, sparse_convolve

APERTURES = [DiskAperture(), PolygonAperture(blades=5, rotation_deg=17.0), PolygonAperture(blades=6)]


def _sparse_layer(rng: np.random.Generator, shape: tuple[int, ...], density: float) -> np.ndarray:
    layer = np.zeros(shape, np.float32)
    mask = rng.random(shape[:2]) < density
    # every border row and column holds light, corners included
    mask[0, ::7] = mask[-1, 3::5] = mask[::6, 0] = mask[2::9, -1] = True
    mask[0, 0] = mask[-1, -1] = mask[0, -1] = mask[-1, 0] = True
    layer[mask] = rng.random((int(mask.sum()),) + shape[2:], dtype=np.float32) * 2.0
    return layer


def _filter2d(planes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    return cv2.filter2D(planes.astype(np.float64), -1, flipped.astype(np.float64), borderType=cv2.BORDER_CONSTANT)


@pytest.mark.parametrize("aperture", APERTURES, ids=["disc", "pentagon", "hexagon"])
def test_sparse_convolution_equals_filter2d_at_every_radius(aperture) -> None:
    rng = np.random.default_rng(5)
    for radius in range(1, 33):
        kernel = aperture.kernel(float(radius) - 0.3 * (radius % 2))  # integer and fractional radii
        for shape in ((61, 83, 4), (47, 38), (50, 70, 2)):
            layer = _sparse_layer(rng, shape, 0.03)
            got = sparse_convolve(layer, kernel)
            want = _filter2d(layer, kernel)
            assert got.shape == layer.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(want.max()))


def test_sparse_convolution_of_a_single_pixel_is_the_kernel() -> None:
    kernel = PolygonAperture(blades=5, rotation_deg=10.0).kernel(9.0)
    n = kernel.shape[0]
    layer = np.zeros((n + 10, n + 12), np.float32)
    layer[5 + n // 2, 7 + n // 2] = 1.0
    out = sparse_convolve(layer, kernel)
    np.testing.assert_allclose(out[5 : 5 + n, 7 : 7 + n], kernel, rtol=1e-6, atol=1e-9)
    assert out.sum() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("aperture", APERTURES, ids=["disc", "pentagon", "hexagon"])
def test_kernel_runs_rebuild_the_kernel(aperture) -> None:
    for radius in (1.0, 2.5, 7.0, 16.0, 32.0):
        kernel = aperture.kernel(radius)
        split = kernel_runs(kernel)
        rebuilt = np.zeros(kernel.shape, np.float64)
        for u, (a, b) in enumerate(split.runs):
            rebuilt[u, a : b + 1] = split.run_values[u]
            for k in range(split.rim_starts[u], split.rim_starts[u + 1]):
                rebuilt[u, split.rim_cols[k]] += split.rim_values[k]
        np.testing.assert_array_equal(rebuilt.astype(np.float32), kernel)
        # a flat-inside kernel: each row's run is its bulk, the rim a few taps
        assert split.rim_cols.size <= 4 * kernel.shape[0]


def test_nonzero_pixels_and_estimate() -> None:
    layer = _sparse_layer(np.random.default_rng(2), (40, 50, 3), 0.1)
    starts, cols = nonzero_pixels(layer)
    ys, xs = np.nonzero(layer.sum(axis=2) > 0)
    assert starts[-1] == ys.size
    np.testing.assert_array_equal(cols, xs)
    np.testing.assert_array_equal(np.diff(starts), np.bincount(ys, minlength=40))
    assert estimate_nonzero_pixels(layer, step=1) == ys.size


def test_sparse_convolution_does_not_depend_on_the_thread_count() -> None:
    numba = pytest.importorskip("numba")
    layer = _sparse_layer(np.random.default_rng(9), (120, 90, 4), 0.05)
    kernel = DiskAperture().kernel(12.0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sparse_convolve(layer, kernel)
        numba.set_num_threads(max(before, 2))
        many = sparse_convolve(layer, kernel)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def _scene(h: int, w: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.random((h // 8, w // 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = img.clip(0, 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "wavy":
        disp = yy / h + 0.04 * np.sin(xx / 37.0) * np.sin(yy / 53.0)
    else:
        disp = cv2.resize(rng.random((8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        if kind == "terraced":
            disp = np.round(disp.clip(0, 1) * 8) / 8
    return img, np.clip(disp, 0, 1).astype(np.float32)


@pytest.mark.parametrize("kind", ["wavy", "cluttered", "terraced"])
@pytest.mark.parametrize("aperture", [DiskAperture(), PolygonAperture(blades=6, rotation_deg=20.0)], ids=["disc", "hexagon"])
def test_renderer_compiled_paths_match_the_numpy_paths(monkeypatch, kind, aperture) -> None:
    img, disp = _scene(200, 320, kind)
    calls = []
    real = lens_blur._filter

    def counting(rgba, kernel):
        calls.append(kernel.size)
        return real(rgba, kernel)

    monkeypatch.setattr(lens_blur, "_filter", counting)
    new = render_lens_blur(img, disp, 0.5, 32, aperture=aperture, highlight_boost=True)
    monkeypatch.setattr(lens_blur, "SPARSE_BLUR", False)
    scatter_only = render_lens_blur(img, disp, 0.5, 32, aperture=aperture, highlight_boost=True)
    monkeypatch.setattr(lens_blur, "COMPILED_SCATTER", False)
    old = render_lens_blur(img, disp, 0.5, 32, aperture=aperture, highlight_boost=True)
    assert max(calls) >= 130  # DFT-sized kernels occurred, so the sparse path was considered
    np.testing.assert_array_equal(scatter_only, old)  # the compiled scatter is bit-identical
    assert np.abs(new - old).max() <= 1.0 / 255.0


def test_renderer_uses_the_sparse_path_on_sparse_layers(monkeypatch) -> None:
    from magicbokeh import sparse_blur

    used = []
    real = sparse_blur.sparse_convolve
    monkeypatch.setattr(sparse_blur, "sparse_convolve", lambda *a, **k: used.append(1) or real(*a, **k))
    img, disp = _scene(200, 320, "cluttered")
    render_lens_blur(img, disp, 0.5, 32)
    assert used
