"""Layered test scenes: the classical renderer against the thin-lens ray tracer
(:func:`magicbokeh.data.raytrace.render_thin_lens`), for tests and ``bench/bench_fill.py``.

Kept out of ``magicbokeh/`` so that the core renderer never imports the data layer.
"""

from __future__ import annotations

import numpy as np

#: Disparities of the three layers of :func:`three_layer_scene`, far to near (1 = nearest).
THREE_LAYER_DISPARITIES = (0.1, 0.5, 0.9)


def _smooth_texture(rng: np.random.Generator, size: int, base: tuple[float, float, float], cell_px: float) -> np.ndarray:
    """(size, size, 3) float32 sRGB: ``base`` colour varied by a smooth random field (feature size
    ``cell_px``, amplitude about +-0.2)."""
    import cv2

    grid = int(size / cell_px) + 2
    noise = cv2.resize(rng.random((grid, grid, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(0.6 * np.float32(base) + 0.4 * noise, 0.0, 1.0).astype(np.float32)


def _disc(size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """(size, size) float32 0/1 disc (pixel centres inside)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + np.float32(0.5)
    return ((xs - cx) ** 2 + (ys - cy) ** 2 <= radius * radius).astype(np.float32)


def three_layer_scene(size: int = 176, seed: int = 0, *, cell_px: float | None = None):
    """A far textured plane, a textured disc and a nearer textured disc overlapping it.

    Complete RGBA layers (far -> near) at :data:`THREE_LAYER_DISPARITIES` for
    :func:`magicbokeh.data.raytrace.render_thin_lens`; the discs sit in the central 60 % of the
    frame, so a frame margin of the largest CoC radius can be left out of comparisons. Edges are
    hard (alpha 0 or 1): the renderer takes one disparity per pixel, so an anti-aliased edge pixel
    (a mix of two depths) cannot be represented and would measure matting, not partial occlusion.

    Args:
        size: side (pixels).
        seed: texture seed.
        cell_px: texture feature size (pixels); default ``size / 8``.

    Returns:
        (layers, image, disparity): the layers, the all-in-focus (H, W, 3) float32 sRGB composite,
        and the (H, W) float32 disparity of the visible (front) surface.
    """
    from magicbokeh.data.raytrace import Layer, composite_sharp

    rng = np.random.default_rng(seed)
    cell = cell_px or size / 8.0
    far, mid, near = THREE_LAYER_DISPARITIES
    bg = np.ones((size, size, 4), np.float32)
    bg[..., :3] = _smooth_texture(rng, size, (0.25, 0.45, 0.75), cell)
    middle = np.zeros((size, size, 4), np.float32)
    middle[..., :3] = _smooth_texture(rng, size, (0.85, 0.7, 0.2), cell)
    middle[..., 3] = _disc(size, 0.42 * size, 0.44 * size, 0.2 * size)
    front = np.zeros((size, size, 4), np.float32)
    front[..., :3] = _smooth_texture(rng, size, (0.8, 0.15, 0.2), cell)
    front[..., 3] = _disc(size, 0.6 * size, 0.6 * size, 0.15 * size)
    layers = [Layer(bg, far), Layer(middle, mid), Layer(front, near)]
    disparity = np.full((size, size), far, np.float32)
    for layer in layers[1:]:
        disparity[layer.rgba[..., 3] > 0.5] = layer.disparity
    return layers, composite_sharp(layers), disparity


def occlusion_edge_masks(disparity: np.ndarray, focus_disparity: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(interior, near_edge) bool masks for comparing renders of a layered scene.

    ``near_edge``: pixels within the CoC radius (+1 px) of a depth discontinuity, the radius being
    the larger of the two sides' (``K * |d - f|``); the radius varies along an edge, so each edge
    pixel is dilated by its own. ``interior``: the frame minus a margin of the largest CoC radius
    + 2 px, where renderers legitimately differ in how they continue the scene past the frame.
    """
    import cv2

    ones = np.ones((3, 3), np.uint8)
    coc = np.abs(np.float32(k) * (disparity - np.float32(focus_disparity)))
    edge = cv2.dilate(disparity, ones) != cv2.erode(disparity, ones)
    reach = np.ceil(cv2.dilate(coc, ones))
    near_edge = np.zeros(disparity.shape, bool)
    for r in np.unique(reach[edge]):
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(r) + 3, 2 * int(r) + 3))
        near_edge |= cv2.dilate((edge & (reach == r)).astype(np.uint8), ker).astype(bool)
    margin = int(np.ceil(coc.max())) + 2
    interior = np.zeros(disparity.shape, bool)
    interior[margin:-margin, margin:-margin] = True
    return interior, near_edge


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) between two [0, 1] images over ``mask`` (all pixels if None)."""
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = float(diff[mask].mean() if mask is not None else diff.mean())
    return 10.0 * float(np.log10(1.0 / max(mse, 1e-12)))
