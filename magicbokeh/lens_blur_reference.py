"""Reference paths of the classical renderer, in plain NumPy and OpenCV (slow, obviously correct).

:func:`composite_layers`: the layered compositing of :mod:`magicbokeh.lens_blur`, one dense
whole-photo convolution per layer and channel. The compiled compositor
(:mod:`magicbokeh.lens_blur_compiled`) must equal it up to float rounding; it is also what runs when
Numba is missing.

:func:`naive_scatter`: every pixel spreads its linear-light colour over the aperture kernel of its own circle-of-confusion
radius (layer radii rounded exactly as the fast renderer does); the result is normalised by the
accumulated weight. It ignores occlusion, so it matches :func:`render_lens_blur` on scenes whose
pixels share one radius (a single plane) — which is where the tests compare them. The layered
scenes that compare the renderer with the thin-lens ray tracer live with the tests
(``tests/layered_scenes.py``): the core does not import the data layer.
"""

from __future__ import annotations

import cv2
import numpy as np

from .apertures import Aperture, DiskAperture
from .colour import linear_to_srgb, srgb_to_linear
from .focus import signed_coc_radius_px
from .lens_blur_layers import Layers, composite_groups, layer_light, layer_occlusion


def composite_layers(layers: Layers, aperture: Aperture, half_res_radius_px: float) -> np.ndarray:
    """(H, W, 4) float32: premultiplied linear colour and coverage of all layers, composited near
    to far in the groups of :func:`~magicbokeh.lens_blur_layers.composite_groups`. A group's light
    passes ``clip(1 - S, 0, 1) * F``, where ``S`` sums the blurred occlusion of the groups in front
    and ``F`` multiplies ``1 -`` their blurred fill occlusion."""
    height, width = layers.lower.shape
    colour = np.zeros((height, width, 4), np.float32)
    occluded = np.zeros((height, width), np.float32)
    behind_fill = np.ones((height, width), np.float32)
    for group in composite_groups(layers.first, layers.last, half_res_radius_px, layers.fills):
        light = np.zeros((height, width, 4), np.float32)
        masks = np.zeros((height, width, 2), np.float32)
        for layer in group:  # a group is all on one grid: blur() picks it from the radius
            layer_masks = np.zeros((height, width, 2), np.float32)
            layer_masks[..., 0] = layer_occlusion(layers, layer)
            layer_light_ = layer_light(layers, layer)
            fill = layers.fills.get(layer)
            if fill is not None:
                layer_light_[fill.ys, fill.xs] += fill.values[:, :4]
                layer_masks[fill.ys, fill.xs, 1] += fill.values[:, 5]
            light += blur(layer_light_, abs(layer), aperture, half_res_radius_px)
            masks += blur(layer_masks, abs(layer), aperture, half_res_radius_px)
        seen = np.clip(np.float32(1.0) - occluded, 0.0, 1.0) * behind_fill
        colour += light * seen[..., None]
        occluded += masks[..., 0]
        behind_fill *= np.float32(1.0) - masks[..., 1]
    return colour


def blur(planes: np.ndarray, r: int, aperture: Aperture, half_res_radius_px: float) -> np.ndarray:
    """Aperture blur of radius ``r`` px of (h, w, c) float32 ``planes`` (zero outside), same shape.

    From ``half_res_radius_px`` on, on a grid twice coarser: 2 x 2 average (an odd size padded
    with zeros), the kernel of radius r / 2, and OpenCV's bilinear 2x upsampling back.
    """
    if r < half_res_radius_px:
        return _filter(planes, aperture.kernel(float(r)))
    h, w = planes.shape[:2]
    he, we = h + (h & 1), w + (w & 1)
    padded = np.zeros((he, we) + planes.shape[2:], np.float32)
    padded[:h, :w] = planes
    small = cv2.resize(padded, (we // 2, he // 2), interpolation=cv2.INTER_AREA)
    small = _filter(small.reshape(small.shape[:2] + planes.shape[2:]), aperture.kernel(r / 2.0))
    out = cv2.resize(small, (we, he), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out.reshape((he, we) + planes.shape[2:])[:h, :w])


def _filter(planes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (zero outside) each channel of (h, w, c) ``planes`` with ``kernel``."""
    if kernel.shape == (1, 1):
        return planes.copy()
    # filter2D correlates: flip the kernel so light spreads in the aperture's own orientation.
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    out = cv2.filter2D(planes, -1, flipped, borderType=cv2.BORDER_CONSTANT)
    out = out.reshape(planes.shape)
    return np.maximum(out, 0.0, out=out)  # a DFT's round-off can leave tiny negatives


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
