"""Thin-lens ray tracing over layered scenes: the ground truth for synthetic bokeh pairs.

A scene is a stack of *complete* RGBA layers (nothing cut away by nearer layers), ordered far ->
near, each at a constant disparity (a fronto-parallel plane) or a per-pixel disparity (a slanted
plane). Seen through a thin lens focused at disparity ``f``, a ray through the aperture point
``u`` (unit disc) meets a layer at disparity ``d`` displaced by ``u * K * (d - f)`` pixels, the same
radius convention as the classical renderer (:func:`magicbokeh.focus.signed_coc_radius_px`, CoC
radius ``K * |d - f|`` px, positive = nearer). For every aperture sample the shifted layers are
alpha-composited in linear light and the samples are averaged. Because every layer is complete, the
background hidden behind a blurred foreground edge is really there, so partial occlusion comes out
right instead of being inpainted.

Aperture samples are a symmetric Vogel (sunflower) spiral: deterministic, evenly spread, and with a
centroid of exactly zero. Their count keeps neighbouring sample displacements about 0.5 px apart up
to ``MAX_SAMPLES``; beyond that each layer is pre-filtered by a Gaussian of half its own sample
spacing so the sum of shifted copies stays smooth (noise-free) at a bounded cost. That pre-filter
only softens occlusion boundaries by ``spacing / 2`` px (about 1.3 px at a 32 px CoC radius).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..colour import linear_to_srgb, srgb_to_linear
from ..errors import MagicBokehError

logger = logging.getLogger(__name__)

#: Target distance (pixels) between displacements of neighbouring aperture samples.
SAMPLE_SPACING_PX = 0.5
#: Upper bound on aperture samples chosen automatically (cost grows linearly with the count).
MAX_SAMPLES = 512


@dataclass
class Layer:
    """One complete scene layer.

    Attributes:
        rgba: (H, W, 4) float32: sRGB colour in [0, 1] (straight, not premultiplied) and alpha in
            [0, 1]. Complete: not cut by nearer layers.
        disparity: a float (fronto-parallel plane) or an (H, W) float32 map (slanted plane), in
            [0, 1] with 1 = nearest.
    """

    rgba: np.ndarray
    disparity: float | np.ndarray


def _check_layers(layers: Sequence[Layer]) -> tuple[int, int]:
    if len(layers) == 0:
        raise MagicBokehError("a scene needs at least one layer; pass layers ordered far -> near.")
    h, w = None, None
    for i, layer in enumerate(layers):
        rgba = np.asarray(layer.rgba)
        if rgba.ndim != 3 or rgba.shape[2] != 4:
            raise MagicBokehError(f"layer {i}: rgba must be (H, W, 4); got shape {rgba.shape}.")
        if h is None:
            h, w = rgba.shape[:2]
        elif rgba.shape[:2] != (h, w):
            raise MagicBokehError(
                f"layer {i} is {rgba.shape[1]}x{rgba.shape[0]} but layer 0 is {w}x{h}; "
                "all layers must have the same size."
            )
        d = np.asarray(layer.disparity, np.float32)
        if d.ndim not in (0, 2) or (d.ndim == 2 and d.shape != (h, w)):
            raise MagicBokehError(
                f"layer {i}: disparity must be a number or an (H, W) = ({h}, {w}) map; got shape {d.shape}."
            )
        if not np.all(np.isfinite(d)):
            raise MagicBokehError(f"layer {i}: disparity has NaN or infinite values.")
    return int(h), int(w)


def _premultiplied_linear(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) float32: linear-light colour times alpha, then alpha."""
    rgba = np.clip(np.asarray(rgba, np.float32), 0.0, 1.0)
    alpha = rgba[..., 3:4]
    return np.ascontiguousarray(np.concatenate([srgb_to_linear(rgba[..., :3]) * alpha, alpha], axis=2))


def _over(acc: np.ndarray | None, layer: np.ndarray, *, owned: bool = False) -> np.ndarray:
    """Premultiplied ``layer`` over ``acc`` (both (H, W, 4)), in place; ``acc`` None = nothing behind.

    ``owned``: ``layer`` is a temporary that may become the accumulator without a copy.
    """
    if acc is None:
        return layer if owned else layer.copy()
    acc *= 1.0 - layer[..., 3:4]
    acc += layer
    return acc


def aperture_samples(n: int) -> np.ndarray:
    """(n', 2) float32 points on the unit disc, n' = n rounded up to even (1 for n <= 1).

    A Vogel spiral of ``ceil(n / 2)`` points plus their mirror images, so the centroid is exactly 0
    and a blurred layer is not shifted as a whole.
    """
    if n <= 1:
        return np.zeros((1, 2), np.float32)
    half = (n + 1) // 2
    k = np.arange(half, dtype=np.float64)
    radius = np.sqrt((k + 0.5) / half)
    theta = k * math.pi * (3.0 - math.sqrt(5.0))  # golden angle
    pts = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    return np.concatenate([pts, -pts]).astype(np.float32)


def sample_count(max_coc_radius_px: float, *, spacing_px: float = SAMPLE_SPACING_PX) -> int:
    """Aperture samples that put displacements ``spacing_px`` apart at ``max_coc_radius_px`` (>= 1)."""
    r = abs(float(max_coc_radius_px))
    if r < 1e-6:
        return 1
    return max(2, int(math.ceil(math.pi * (r / spacing_px) ** 2)))


def composite_sharp(layers: Sequence[Layer]) -> np.ndarray:
    """All-in-focus image: the layers (far -> near) alpha-composited in linear light.

    Returns:
        (H, W, 3) float32 sRGB in [0, 1]; pixels no layer covers are black.
    """
    _check_layers(layers)
    acc = None
    for layer in layers:
        acc = _over(acc, _premultiplied_linear(layer.rgba))
    return linear_to_srgb(acc[..., :3])


def render_thin_lens(
    layers: Sequence[Layer], focus_disparity: float, k: float, *, samples: int | None = None
) -> np.ndarray:
    """Ray-trace a thin lens over a layered scene.

    Args:
        layers: complete layers ordered far -> near (see :class:`Layer`).
        focus_disparity: disparity of the focal plane, in [0, 1] (1 = near).
        k: blur strength: CoC radius in pixels is ``k * |d - focus_disparity|``; >= 0 (32 = the
            official maximum).
        samples: aperture samples; None chooses them from the largest CoC radius (about 0.5 px
            between neighbouring displacements, at most ``MAX_SAMPLES``). For a reference-grade
            render with no pre-filter, pass ``sample_count(max_coc_radius_px)`` (slower: the count
            grows with the radius squared).

    Returns:
        (H, W, 3) float32 sRGB in [0, 1]. Layers ordered far -> near.

    Notes:
        Fronto-parallel layers move by exact sub-pixel translations (bilinear, ``BORDER_REPLICATE``:
        a layer continues past the frame with its edge pixels). Slanted layers use a per-pixel
        backward map sampled with the disparity of the *output* pixel: an approximation valid for
        smooth disparity (exact for constant disparity).
    """
    h, w = _check_layers(layers)
    try:
        k = float(k)
        focus = float(focus_disparity)
    except (TypeError, ValueError):
        raise MagicBokehError("k and focus_disparity must be numbers.") from None
    if not (math.isfinite(k) and k >= 0.0):
        raise MagicBokehError(f"blur strength k must be a finite number >= 0; got {k}.")
    if not math.isfinite(focus):
        raise MagicBokehError(f"focus_disparity must be finite; got {focus}.")
    if samples is not None and int(samples) < 1:
        raise MagicBokehError(f"samples must be at least 1; got {samples}.")

    # 1. Per-layer signed CoC radius (px), as the classical renderer: K * (d - f).
    radii = [k * (np.asarray(layer.disparity, np.float32) - np.float32(focus)) for layer in layers]
    max_radius = max(float(np.max(np.abs(r))) for r in radii)
    n = sample_count(max_radius) if samples is None else int(samples)
    if samples is None and n > MAX_SAMPLES:
        n = MAX_SAMPLES
    pts = aperture_samples(n)
    n = len(pts)

    # 2. Premultiplied linear layers; pre-filter those whose sample displacements are > 0.5 px apart
    #    so n shifted copies add up to a smooth disc instead of a dotted one.
    spacing_unit = math.sqrt(math.pi / n) if n > 1 else 0.0
    prepared = []
    for layer, radius in zip(layers, radii):
        img = _premultiplied_linear(layer.rgba)
        spacing = float(np.max(np.abs(radius))) * spacing_unit
        if spacing > SAMPLE_SPACING_PX:
            img = cv2.GaussianBlur(img, (0, 0), 0.5 * spacing, borderType=cv2.BORDER_REPLICATE)
        prepared.append((img, radius, _support(img[..., 3])))
    logger.debug("thin lens: %d layers, max CoC %.2f px, %d aperture samples", len(layers), max_radius, n)

    # 3. Per aperture sample: shift every layer by u * radius, composite back to front, accumulate.
    total = np.zeros((h, w, 4), np.float32)
    grid = None
    for ux, uy in pts:
        acc = None
        for img, radius, box in prepared:
            if radius.ndim == 2:
                if grid is None:
                    grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
                # Backward map with the output pixel's own disparity (smooth-disparity approximation).
                map_x = cv2.scaleAdd(radius, -float(ux), grid[0])
                map_y = cv2.scaleAdd(radius, -float(uy), grid[1])
                moved = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                acc = _over(acc, moved, owned=True)
                continue
            sx, sy = float(ux * radius), float(uy * radius)
            if box is None or acc is None:
                if sx == 0.0 and sy == 0.0:
                    acc = _over(acc, img)
                else:
                    # Forward translation: the layer's point at x appears at x + shift.
                    m = np.float32([[1, 0, sx], [0, 1, sy]])
                    moved = cv2.warpAffine(
                        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                    )
                    acc = _over(acc, moved, owned=True)
                continue
            # A cut-out away from the frame edges: only its shifted bounding box (+1 px for the
            # bilinear taps) changes anything, so warp and composite that window alone.
            y0, y1, x0, x1 = box
            if y1 <= y0:
                continue  # fully transparent layer
            dx0, dy0 = max(int(math.floor(x0 + sx)) - 1, 0), max(int(math.floor(y0 + sy)) - 1, 0)
            dx1, dy1 = min(int(math.ceil(x1 + sx)) + 1, w), min(int(math.ceil(y1 + sy)) + 1, h)
            if dx1 <= dx0 or dy1 <= dy0:
                continue  # shifted entirely out of frame
            m = np.float32([[1, 0, sx - dx0], [0, 1, sy - dy0]])
            window = cv2.warpAffine(
                img, m, (dx1 - dx0, dy1 - dy0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            _over(acc[dy0:dy1, dx0:dx1], window)
        total += acc
    total /= np.float32(n)
    return linear_to_srgb(total[..., :3])


def _support(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) bounding the non-zero alpha, or None when it touches the frame edge.

    Edge-touching layers are replicated past the frame by the warp, so they take the full-frame path.
    """
    ys = np.flatnonzero(alpha.max(axis=1) > 0)
    xs = np.flatnonzero(alpha.max(axis=0) > 0)
    h, w = alpha.shape
    if ys.size == 0:
        return (0, 0, 0, 0)
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    if y0 == 0 or x0 == 0 or y1 == h or x1 == w:
        return None
    return y0, y1, x0, x1
