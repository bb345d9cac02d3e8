"""Physically based, weight-free lens blur: layered, occlusion-aware, in linear light.

The scene is cut into depth layers one pixel of blur radius apart (signed circle-of-confusion
radius ``K * (d - f)``). Each layer's premultiplied colour and coverage are blurred with the
aperture kernel of its radius and composited back to front with the "over" operator, so a sharp
foreground hides the blurred background completely (no halos, no colour bleeding) while a blurred
foreground spreads semi-transparently over what lies behind. Pixels between two layer radii are
split linearly between them, which keeps blur continuous. Large radii are blurred on a coarser
grid (box-averaged, so light is conserved) and composited at half resolution, then merged in one
step, which keeps the cost nearly independent of K. The accumulated colour is divided by the accumulated coverage, which also normalises image
borders, so brightness (in linear light) is preserved.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from .apertures import Aperture, DiskAperture
from .backends import ProgressCallback
from .colour import highlight_gain, linear_to_srgb, srgb_to_linear
from .focus import check_k, signed_coc_radius_px
from .settings import HIGHLIGHT_RATIO, HIGHLIGHT_THRESHOLD

logger = logging.getLogger(__name__)

#: Radius (pixels) that a layer keeps after downsampling; larger layers are blurred at 1/f size.
LOWRES_RADIUS_PX = 3.0


def render_lens_blur(
    image: np.ndarray,
    disparity: np.ndarray,
    focus_disparity: float,
    k: float,
    *,
    aperture: Aperture | None = None,
    focal_range: float = 0.0,
    highlight_boost: bool = False,
    highlight_threshold: float = HIGHLIGHT_THRESHOLD,
    highlight_ratio: float = HIGHLIGHT_RATIO,
    lowres_radius_px: float = LOWRES_RADIUS_PX,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Render lens blur on a photo with a disparity map.

    Args:
        image: (H, W, 3) float32 sRGB in [0, 1].
        disparity: (H, W) float32 in [0, 1], 1 = nearest.
        focus_disparity: disparity of the focal plane, in [0, 1].
        k: blur strength in [0, 32]; the circle of confusion has radius ``k * |d - f|`` pixels.
        aperture: kernel shape (default: a disc).
        focal_range: disparity width around the focus that stays fully sharp.
        highlight_boost: brighten out-of-focus highlights before blurring (BokehMe style).
        lowres_radius_px: blur radius kept after downsampling large layers (quality vs speed;
            ``inf`` disables downsampling).
        progress: optional ``progress(fraction, stage)``.

    Returns:
        (H, W, 3) float32 sRGB in [0, 1]. ``k == 0`` returns an exact copy of ``image``.
    """
    k = check_k(k)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if k == 0.0:
        return image.copy()
    aperture = aperture or DiskAperture()
    height, width = disparity.shape
    radius = signed_coc_radius_px(disparity, focus_disparity, k, focal_range=focal_range)

    linear = srgb_to_linear(image)
    if highlight_boost:
        linear *= highlight_gain(
            image, radius / np.float32(k), threshold=highlight_threshold, ratio=highlight_ratio
        )

    # Split each pixel between the two integer layer radii around its own radius.
    lower = np.floor(radius)
    frac = (radius - lower).ravel()
    lower = lower.astype(np.int32).ravel()
    first, last = int(lower.min()), int(lower.max()) + 1
    order = np.argsort(lower, kind="stable")
    starts = np.searchsorted(lower[order], np.arange(first, last + 2), side="left")

    def members(layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat pixel indices and weights of one layer (pixels just below and just above it)."""
        parts_idx, parts_w = [], []
        for base, use_frac in ((layer, False), (layer - 1, True)):
            if first <= base <= last:
                sel = order[starts[base - first] : starts[base - first + 1]]
                w = frac[sel] if use_frac else 1.0 - frac[sel]
                keep = w > 0
                parts_idx.append(sel[keep])
                parts_w.append(w[keep])
        if not parts_idx:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return np.concatenate(parts_idx), np.concatenate(parts_w).astype(np.float32)

    # Premultiplied colour (channels 0-2) and coverage (channel 3), composited back to front.
    # Strongly blurred layers (factor >= 2) are composited into a half-resolution accumulator and
    # merged into the full-resolution one in a single step when the run of such layers ends: "over"
    # is associative, so this is the same sum, at a quarter of the per-layer cost.
    def factor_of(r: float) -> int:
        return max(1, int(r // lowres_radius_px)) if math.isfinite(lowres_radius_px) else 1

    max_factor = factor_of(max(abs(first), abs(last)))
    margin = 2 * max_factor + 2  # room to align crops to the coarser grids past the image edge
    hp, wp = height + margin + (height + margin) % 2, width + margin + (width + margin) % 2
    accum = np.zeros((hp, wp, 4), np.float32)
    half = np.zeros((hp // 2, wp // 2, 4), np.float32)
    half_used = False

    def flush_half() -> None:
        nonlocal half_used
        if half_used:
            _over(accum, cv2.resize(half, (wp, hp), interpolation=cv2.INTER_LINEAR))
            half.fill(0.0)
            half_used = False

    flat_linear = linear.reshape(-1, 3)
    layers = range(first, last + 1)  # ascending signed radius = far to near (back to front)
    for step, layer in enumerate(layers):
        idx, weight = members(layer)
        if idx.size == 0:
            continue
        ys, xs = np.divmod(idx, width)
        r = abs(layer)
        factor = factor_of(r)
        pad = int(math.ceil(r)) + 2
        if factor == 1:
            flush_half()
            y0, y1 = max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, height)
            x0, x1 = max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, width)
            layer_rgba = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
            layer_rgba[ys - y0, xs - x0, :3] = flat_linear[idx] * weight[:, None]
            layer_rgba[ys - y0, xs - x0, 3] = weight
            if r > 0:
                layer_rgba = _filter(layer_rgba, aperture.kernel(r))
            _over(accum[y0:y1, x0:x1], layer_rgba)
        else:
            # Crop aligned to both the layer's grid (factor) and the half-resolution grid.
            unit = factor if factor % 2 == 0 else 2 * factor
            y0 = max(int(ys.min()) - pad, 0) // unit * unit
            x0 = max(int(xs.min()) - pad, 0) // unit * unit
            y1 = -(-min(int(ys.max()) + pad + 1, height) // unit) * unit
            x1 = -(-min(int(xs.max()) + pad + 1, width) // unit) * unit
            layer_rgba = _box_downsampled_layer(
                flat_linear[idx], weight, ys - y0, xs - x0, (y1 - y0) // factor, (x1 - x0) // factor, factor
            )
            layer_rgba = _filter(layer_rgba, aperture.kernel(r / factor))
            if factor != 2:
                layer_rgba = cv2.resize(layer_rgba, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_LINEAR)
            _over(half[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2], layer_rgba)
            half_used = True
        if progress is not None:
            progress((step + 1) / len(layers), "lens blur")
    flush_half()
    accum = accum[:height, :width]

    coverage = accum[..., 3:4]
    out_linear = np.where(
        coverage > 1e-6, accum[..., :3] / np.maximum(coverage, 1e-6), linear
    )
    return linear_to_srgb(out_linear)


def _over(region: np.ndarray, layer: np.ndarray) -> None:
    """Composite a premultiplied RGBA ``layer`` over ``region`` in place (colour and coverage)."""
    keep = cv2.subtract(1.0, layer[..., 3])
    region[...] = cv2.add(cv2.multiply(region, cv2.merge([keep, keep, keep, keep])), layer)


def _box_downsampled_layer(
    colours: np.ndarray, weights: np.ndarray, ys: np.ndarray, xs: np.ndarray, h: int, w: int, factor: int
) -> np.ndarray:
    """A layer's premultiplied RGBA averaged over ``factor`` x ``factor`` cells, (h, w, 4) float32.

    Built straight from the member pixels (no full-resolution layer image): each cell holds the
    mean of its pixels, so light is conserved exactly as by a box downsample.
    """
    cell = (ys // factor) * w + (xs // factor)
    out = np.empty((h * w, 4), np.float32)
    for c in range(3):
        out[:, c] = np.bincount(cell, weights=colours[:, c] * weights, minlength=h * w)
    out[:, 3] = np.bincount(cell, weights=weights, minlength=h * w)
    out *= np.float32(1.0 / (factor * factor))
    return out.reshape(h, w, 4)


def _filter(rgba: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (zero outside the layer) each channel with ``kernel``."""
    if kernel.shape == (1, 1):
        return rgba
    # The kernel is symmetric under 180 degree rotation only for some shapes; flip it so filter2D's
    # correlation is a true convolution (light spreads in the aperture's own orientation).
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    out = cv2.filter2D(rgba, -1, flipped, borderType=cv2.BORDER_CONSTANT)
    return np.maximum(out, 0.0, out=out)  # FFT round-off can leave tiny negatives
