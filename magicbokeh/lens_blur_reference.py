"""Pure-NumPy reference for the classical renderer: a naive per-pixel scatter (slow, obviously correct).

Naive scatter: every pixel spreads its linear-light colour over the aperture kernel of its own circle-of-confusion
radius (layer radii rounded exactly as the fast renderer does); the result is normalised by the
accumulated weight. It ignores occlusion, so it matches :func:`render_lens_blur` on scenes whose
pixels share one radius (a single plane) — which is where the tests compare them. The layered
scenes that compare the renderer with the thin-lens ray tracer live with the tests
(``tests/layered_scenes.py``): the core does not import the data layer.
"""

from __future__ import annotations

import numpy as np

from .apertures import Aperture, DiskAperture
from .colour import linear_to_srgb, srgb_to_linear
from .focus import signed_coc_radius_px


def naive_scatter(
    image: np.ndarray,
    disparity: np.ndarray,
    focus_disparity: float,
    k: float,
    *,
    aperture: Aperture | None = None,
) -> np.ndarray:
    """(H, W, 3) float32 sRGB; one Python-level splat per pixel (slow: small images only)."""
    aperture = aperture or DiskAperture()
    h, w = disparity.shape
    linear = srgb_to_linear(image).astype(np.float64)
    radius = np.abs(signed_coc_radius_px(disparity, focus_disparity, k))
    colour = np.zeros((h, w, 3), np.float64)
    weight = np.zeros((h, w), np.float64)
    for y in range(h):
        for x in range(w):
            r = float(radius[y, x])
            lower = np.floor(r)
            for layer_r, share in ((lower, 1.0 - (r - lower)), (lower + 1, r - lower)):
                if share <= 0:
                    continue
                kern = aperture.kernel(layer_r).astype(np.float64) * share
                half = kern.shape[0] // 2
                y0, y1 = max(y - half, 0), min(y + half + 1, h)
                x0, x1 = max(x - half, 0), min(x + half + 1, w)
                part = kern[y0 - y + half : y1 - y + half, x0 - x + half : x1 - x + half]
                colour[y0:y1, x0:x1] += part[..., None] * linear[y, x]
                weight[y0:y1, x0:x1] += part
    return linear_to_srgb((colour / np.maximum(weight, 1e-12)[..., None]).astype(np.float32))
