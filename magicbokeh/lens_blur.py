"""Physically based, weight-free lens blur: layered, occlusion-aware, in linear light.

The scene is cut into depth layers one pixel of blur radius apart (signed circle-of-confusion
radius ``K * (d - f)``). Each layer's premultiplied colour and coverage are blurred with the
aperture kernel of its radius and composited back to front with the "over" operator, so a sharp
foreground hides the blurred background completely (no halos, no colour bleeding) while a blurred
foreground spreads semi-transparently over what lies behind. Pixels between two layer radii are
split linearly between them, which keeps blur continuous. Large radii are blurred at a reduced
resolution (a box-filtered pyramid level) and upsampled, which keeps the cost nearly independent of
K. The accumulated colour is divided by the accumulated coverage, which also normalises image
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
LOWRES_RADIUS_PX = 4.0


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
    accum = np.zeros((height, width, 4), np.float32)
    flat_linear = linear.reshape(-1, 3)
    layers = range(first, last + 1)  # ascending signed radius = far to near (back to front)
    for step, layer in enumerate(layers):
        idx, weight = members(layer)
        if idx.size == 0:
            continue
        ys, xs = np.divmod(idx, width)
        r = abs(layer)
        pad = int(math.ceil(r)) + 2
        y0, y1 = max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, height)
        x0, x1 = max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, width)
        layer_rgba = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
        layer_rgba[ys - y0, xs - x0, :3] = flat_linear[idx] * weight[:, None]
        layer_rgba[ys - y0, xs - x0, 3] = weight
        if r > 0:
            layer_rgba = _blur_layer(layer_rgba, r, aperture, lowres_radius_px)
        region = accum[y0:y1, x0:x1]
        keep = cv2.subtract(1.0, layer_rgba[..., 3])
        # "over": accum = layer + accum * (1 - alpha_layer), on colour and coverage alike.
        region[...] = cv2.add(cv2.multiply(region, cv2.merge([keep, keep, keep, keep])), layer_rgba)
        if progress is not None:
            progress((step + 1) / len(layers), "lens blur")

    coverage = accum[..., 3:4]
    out_linear = np.where(
        coverage > 1e-6, accum[..., :3] / np.maximum(coverage, 1e-6), linear
    )
    return linear_to_srgb(out_linear)


def _blur_layer(rgba: np.ndarray, radius: float, aperture: Aperture, lowres_radius_px: float) -> np.ndarray:
    """Blur a premultiplied RGBA layer with the aperture of ``radius`` pixels.

    Radii above ``2 * lowres_radius_px`` are blurred on a box-downsampled copy (factor
    ``floor(radius / lowres_radius_px)``) and upsampled bilinearly: the disc's half-maximum rim stays
    at the true radius, only the rim's softness grows with the factor.
    """
    factor = max(1, int(radius // lowres_radius_px)) if math.isfinite(lowres_radius_px) else 1
    if factor == 1:
        return _filter(rgba, aperture.kernel(radius))
    h, w = rgba.shape[:2]
    ph, pw = -h % factor, -w % factor
    padded = np.pad(rgba, ((0, ph), (0, pw), (0, 0))) if ph or pw else rgba
    H, W = padded.shape[:2]
    # INTER_AREA with an integer factor is an exact box average.
    small = cv2.resize(padded, (W // factor, H // factor), interpolation=cv2.INTER_AREA)
    small = _filter(np.ascontiguousarray(small), aperture.kernel(radius / factor))
    big = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(big[:h, :w])


def _filter(rgba: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (zero outside the layer) each channel with ``kernel``."""
    if kernel.shape == (1, 1):
        return rgba
    # The kernel is symmetric under 180 degree rotation only for some shapes; flip it so filter2D's
    # correlation is a true convolution (light spreads in the aperture's own orientation).
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    out = cv2.filter2D(rgba, -1, flipped, borderType=cv2.BORDER_CONSTANT)
    return np.maximum(out, 0.0, out=out)  # FFT round-off can leave tiny negatives
