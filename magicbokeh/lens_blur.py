"""Physically based, weight-free lens blur: layered, occlusion-aware, in linear light.

The scene is cut into depth layers one pixel of blur radius apart (signed circle-of-confusion
radius ``K * (d - f)``). Pixels between two layer radii are split linearly between them, which
keeps blur continuous. Each layer's premultiplied colour, coverage and occlusion are blurred with
the aperture kernel of its radius, at full resolution below :data:`HALF_RES_RADIUS_PX` and on a
grid only twice coarser above it, so a bokeh disc keeps a hard rim (50 % to 10 % within about
1.5 px) at any size, and composited front to back:

* A layer's light reaches the sensor through the transmittance ``clip(1 - S, 0, 1)``, where ``S``
  is the summed blurred occlusion of the layers in front of it. Visible pixels partition the image,
  so the occlusions of neighbouring surfaces add up (a product, "over", would let a quarter of the
  background through where two blurred neighbours meet).
* A pixel occludes once, with full weight, in the farther of its two layers (split in two
  occlusion steps, an opaque surface would let up to a quarter of what lies behind through).
* Each occluding mask is widened by one pixel into neighbouring pixels of the same smooth surface
  before blurring: discs of neighbouring radii do not add up to exactly one where two layers meet,
  and the gap would show the hidden-surface fill as a thin ring (the seams of issue #16).
* The hidden-surface fill occludes too, but it lies behind nearer pixels whose occlusion already
  counts, so its transmittance multiplies instead of adding (adding would count twice the rays
  that both the nearer pixel and the hidden surface block).

The accumulated colour is divided by the accumulated coverage, which also normalises image
borders, so brightness (in linear light) is preserved. Partial occlusion (``fill_hidden``): see
:mod:`magicbokeh.lens_blur_fill` and docs/classical-occlusion.md.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from .apertures import Aperture, DiskAperture
from .backends import ProgressCallback
from .colour import highlight_gain
from .focus import check_k, signed_coc_radius_px
from .lens_blur_fill import OCCLUSION_JUMP_PX, far_side_of_edges, fill_under, hidden_band
from .settings import HIGHLIGHT_RATIO, HIGHLIGHT_THRESHOLD

logger = logging.getLogger(__name__)

__all__ = ["render_lens_blur", "OCCLUDE_AFTER_LAYERS", "OCCLUSION_JUMP_PX"]

#: Blur radius (px) from which a layer is blurred at half resolution (see ``half_res_radius_px``).
#: Below it the disc kernel (up to 11 x 11) is convolved directly; from 13 x 13 taps on OpenCV
#: switches to a DFT that costs ~5x more at full resolution. On the 2x grid the rim still falls
#: from 50 % to 10 % within 1.8 px and the radius stays within 0.1 px at r = 6 and 7.
HALF_RES_RADIUS_PX = 6.0
#: A pixel occludes the layers at least this many layers (pixels of blur radius) behind the farther
#: of its own two layers. 2 (never occlude one's own neighbouring layer) measured 1-3 dB worse
#: near occlusion edges against the ray tracer than 1, with the same seam residual.
OCCLUDE_AFTER_LAYERS = 1


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
    fill_hidden: bool = True,
    progress: ProgressCallback | None = None,
    half_res_radius_px: float = HALF_RES_RADIUS_PX,
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
        fill_hidden: give each layer a plausible surface behind nearer layers at depth
            discontinuities (partial occlusion); ``False``: the hidden part takes the colour of
            what hides it.
        progress: optional ``progress(fraction, stage)``.
        half_res_radius_px: layers blurred by at least this many pixels are blurred on a grid
            twice coarser (2 x 2 box average, disc of half the radius, bilinear back): a quarter
            of the cost, and the rim stays within ~1.5 px (``inf``: all at full resolution).

    Returns:
        (H, W, 3) float32 sRGB in [0, 1]. ``k == 0`` returns an exact copy of ``image``.
    """
    k = check_k(k)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if k == 0.0:
        return image.copy()
    aperture = aperture or DiskAperture()
    height, width = disparity.shape
    radius = np.ascontiguousarray(
        signed_coc_radius_px(disparity, focus_disparity, k, focal_range=focal_range), dtype=np.float32
    )
    linear = srgb_to_linear_fast(image)
    if highlight_boost:
        linear *= highlight_gain(
            image, radius / np.float32(k), threshold=highlight_threshold, ratio=highlight_ratio
        )

    layers = _LayerMembers(radius)
    far_edge = far_side_of_edges(radius) if fill_hidden else None
    # Hidden bands first, far to near: a hidden point belongs to the nearest edge among the layers
    # done so far (edge_dist), so the farther layers must come first. Compositing then runs near
    # to far.
    bands = _hidden_bands(layers, radius, far_edge) if far_edge is not None else {}
    planes = [np.ascontiguousarray(linear[..., c]).ravel() for c in range(3)]

    colour = np.zeros((height, width, 4), np.float32)  # premultiplied colour + coverage
    occluded = np.zeros((height, width), np.float32)  # S: summed blurred occlusion of members
    behind_fill = np.ones((height, width), np.float32)  # F: light that passes the fills in front
    pending: list[tuple[int, tuple[int, int, int, int], np.ndarray]] = []
    order = range(layers.last, layers.first - 1, -1)  # near to far
    for step, layer in enumerate(order):
        # Occlusion of layers at least OCCLUDE_AFTER_LAYERS in front now applies.
        while pending and pending[0][0] >= layer + OCCLUDE_AFTER_LAYERS:
            _, (y0, y1, x0, x1), masks = pending.pop(0)
            _occlude(occluded[y0:y1, x0:x1], behind_fill[y0:y1, x0:x1], masks)
        band = bands.pop(layer, None)
        filled = band is not None
        box, light, occ, fill = _build_layer(layers, layer, planes, radius, band)
        if light is None:
            continue
        y0, y1, x0, x1 = box
        light = _blur(light, abs(layer), aperture, half_res_radius_px)
        masks = _blur(cv2.merge([occ, fill]) if filled else occ, abs(layer), aperture, half_res_radius_px)
        _composite(colour[y0:y1, x0:x1], light, occluded[y0:y1, x0:x1], behind_fill[y0:y1, x0:x1])
        pending.append((layer, box, masks))
        if progress is not None:
            progress((step + 1) / len(order), "lens blur")

    return _finish(colour, linear)


def _composite(colour: np.ndarray, light: np.ndarray, occluded: np.ndarray, behind_fill: np.ndarray) -> None:
    """``colour += light * clip(1 - occluded, 0, 1) * behind_fill`` in place, (h, w, 4) and (h, w)
    crops, in row chunks (no frame-sized temporaries per layer)."""
    for rows in _row_chunks(light.shape[0]):
        seen = np.float32(1.0) - occluded[rows]
        np.clip(seen, 0.0, 1.0, out=seen)
        seen *= behind_fill[rows]
        cv2.add(colour[rows], cv2.multiply(light[rows], cv2.merge([seen] * 4)), dst=colour[rows])


def _occlude(occluded: np.ndarray, behind_fill: np.ndarray, masks: np.ndarray) -> None:
    """Apply a composited layer's blurred occlusion to the layers behind it, in place and in row
    chunks: ``occluded += masks[..., 0]`` (members) and, for a (h, w, 2) ``masks``,
    ``behind_fill *= 1 - masks[..., 1]`` (its fill)."""
    for rows in _row_chunks(masks.shape[0]):
        if masks.ndim == 2:
            occluded[rows] += masks[rows]
        else:
            occluded[rows] += masks[rows, :, 0]
            behind_fill[rows] *= np.float32(1.0) - masks[rows, :, 1]


class _LayerMembers:
    """Pixels of each integer layer radius: every pixel is split between ``floor(r)`` (share
    ``1 - frac``) and ``floor(r) + 1`` (share ``frac``)."""

    def __init__(self, radius: np.ndarray) -> None:
        lower = np.floor(radius)
        self.frac = (radius - lower).ravel()
        lower = lower.astype(np.int32).ravel()
        self.first, self.last = int(lower.min()), int(lower.max()) + 1
        # |radius| <= K <= 32: as int16 the stable sort is a linear-time radix sort.
        self.order = np.argsort(lower.astype(np.int16), kind="stable")
        self.starts = np.searchsorted(lower[self.order], np.arange(self.first, self.last + 2), side="left")

    def __call__(self, layer: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Flat pixel indices and weights of one layer, and how many of them (listed first) have
        their radius in ``[layer, layer + 1)``: they occlude from this layer on."""
        parts_idx, parts_w = [], []
        for base, use_frac in ((layer, False), (layer - 1, True)):
            if self.first <= base <= self.last:
                sel = self.order[self.starts[base - self.first] : self.starts[base - self.first + 1]]
                w = self.frac[sel] if use_frac else 1.0 - self.frac[sel]
                keep = w > 0
                parts_idx.append(sel[keep])
                parts_w.append(w[keep])
        if not parts_idx:
            return np.empty(0, np.int64), np.empty(0, np.float32), 0
        n_floor = parts_idx[0].size if self.first <= layer <= self.last else 0
        return np.concatenate(parts_idx), np.concatenate(parts_w).astype(np.float32), n_floor


def _hidden_bands(
    layers: _LayerMembers, radius: np.ndarray, far_edge: np.ndarray
) -> dict[int, tuple[tuple[int, int, int, int], np.ndarray]]:
    """Per layer with occlusion edges: the box (y0, y1, x0, x1) and the (h, w) bool hidden band
    in it where the layer is extended under nearer pixels (see :func:`hidden_band`)."""
    height, width = radius.shape
    edge_dist = np.full((height, width), np.inf, np.float32)
    bands = {}
    for layer in range(layers.first, layers.last + 1):  # far to near
        idx, _, _ = layers(layer)
        edge = idx[far_edge[idx]]
        if not edge.size:
            continue
        # The hidden band reaches |r(p)| + r + 2 px from the edge.
        reach = abs(layer) + max(abs(layer + OCCLUDE_AFTER_LAYERS), abs(layers.last)) + 2
        eys, exs = np.divmod(edge, width)
        box = (max(int(eys.min()) - reach, 0), min(int(eys.max()) + reach + 1, height))
        box += (max(int(exs.min()) - reach, 0), min(int(exs.max()) + reach + 1, width))
        band = hidden_band(radius, layer, edge, box, edge_dist, layer + OCCLUDE_AFTER_LAYERS)
        if band.any():
            bands[layer] = (box, band > 0)
    return bands


def _build_layer(
    layers: _LayerMembers,
    layer: int,
    planes: list[np.ndarray],
    radius: np.ndarray,
    band: tuple[tuple[int, int, int, int], np.ndarray] | None,
) -> tuple[tuple[int, int, int, int], np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """One layer, unblurred, in its crop: box (y0, y1, x0, x1); (h, w, 4) float32 premultiplied
    linear colour and coverage; (h, w) occlusion of its members; (h, w) occlusion of its fill (or
    ``None`` without ``band``). All ``None`` for an empty layer. ``band``: its hidden band (box
    and mask), filled with the layer's own colours as an opaque surface."""
    height, width = radius.shape
    idx, weight, n_floor = layers(layer)
    if idx.size == 0:
        return (0, 0, 0, 0), None, None, None
    ys, xs = np.divmod(idx, width)
    pad = abs(layer) + 2
    y0, y1 = max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, height)
    x0, x1 = max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, width)
    if band is not None:
        (by0, by1, bx0, bx1), _ = band
        y0, y1 = min(y0, max(by0 - pad, 0)), max(y1, min(by1 + pad, height))
        x0, x1 = min(x0, max(bx0 - pad, 0)), max(x1, min(bx1 + pad, width))
    light = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    occ = np.zeros((y1 - y0, x1 - x0), np.float32)
    cell = (ys - y0) * (x1 - x0) + (xs - x0)
    flat = light.reshape(-1)  # scatter through flat indices: the fast 1-D path
    for c in range(3):
        flat[cell * 4 + c] = planes[c][idx] * weight
    flat[cell * 4 + 3] = weight
    occ.reshape(-1)[cell[:n_floor]] = 1.0
    _widen_occlusion(occ, radius[y0:y1, x0:x1], layer)
    fill = None
    if band is not None:
        (by0, by1, bx0, bx1), mask = band
        fill = np.zeros(occ.shape, np.float32)  # calloc: pages outside the band stay unmapped
        fill_under(light[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0], fill[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0], mask.astype(np.float32))
    return (y0, y1, x0, x1), light, occ, fill


def _widen_occlusion(occ: np.ndarray, radius: np.ndarray, layer: int) -> None:
    """Widen the 0/1 occlusion mask ``occ`` by one pixel into pixels of the same smooth surface
    (radius within :data:`OCCLUSION_JUMP_PX` of the layer's ``[layer, layer + 1)``), in place.

    Blurred with discs of different radii, the occluding masks of two neighbouring layers sum to
    less than one on the side of the larger disc (by up to ~12 % for radii 1 and 2); the overlap
    closes that gap (the sum is clipped), so nothing hidden behind a smooth surface shows through.
    """
    grown = cv2.dilate(occ, np.ones((3, 3), np.uint8))
    for rows in _row_chunks(occ.shape[0]):
        part = grown[rows]
        part *= radius[rows] >= np.float32(layer - OCCLUSION_JUMP_PX)
        part *= radius[rows] < np.float32(layer + 1 + OCCLUSION_JUMP_PX)
        np.maximum(occ[rows], part, out=occ[rows])


def srgb_to_linear_fast(rgb: np.ndarray) -> np.ndarray:
    """:func:`colour.srgb_to_linear` (same curve, float32), with OpenCV's vectorised power."""
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    out = np.empty_like(rgb)
    for rows in _row_chunks(rgb.shape[0]):
        part = rgb[rows]
        cv2.pow((part + np.float32(0.055)) * np.float32(1.0 / 1.055), 2.4, dst=out[rows])
        np.copyto(out[rows], part * np.float32(1.0 / 12.92), where=part <= np.float32(0.04045))
    return out


def linear_to_srgb_fast(linear: np.ndarray) -> np.ndarray:
    """:func:`colour.linear_to_srgb` (same curve, clipped to [0, 1]) with OpenCV's vectorised power."""
    linear = np.ascontiguousarray(linear, dtype=np.float32)
    out = np.empty_like(linear)
    for rows in _row_chunks(linear.shape[0]):
        _encode_srgb(linear[rows], out[rows])
    return out


def _encode_srgb(linear: np.ndarray, out: np.ndarray) -> None:
    """sRGB-encode ``linear`` into the C-contiguous ``out`` of the same shape (clipped to [0, 1])."""
    lin = np.maximum(linear, np.float32(0.0))
    cv2.pow(lin, 1.0 / 2.4, dst=out)
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    np.copyto(out, lin * np.float32(12.92), where=lin <= np.float32(0.0031308))
    np.clip(out, 0.0, 1.0, out=out)


def _finish(colour: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB: the accumulated premultiplied colour divided by its coverage (channel 3),
    the input's ``linear`` colour where nothing landed, encoded."""
    out = np.empty(linear.shape, np.float32)
    for rows in _row_chunks(colour.shape[0]):
        coverage = colour[rows, :, 3:4]
        lin = colour[rows, :, :3] / np.maximum(coverage, np.float32(1e-6))
        np.copyto(lin, linear[rows], where=coverage <= 1e-6)  # nothing landed here: keep the input
        _encode_srgb(lin, out[rows])
    return out


#: Rows per chunk of the per-pixel colour passes. Their temporaries then stay small (in cache, and
#: reused by the allocator) instead of frame-sized arrays that the kernel must map in afresh: at
#: 12 MP the page faults of whole-frame temporaries cost more than the arithmetic.
_CHUNK_ROWS = 64


def _row_chunks(height: int) -> list[slice]:
    return [slice(y, min(y + _CHUNK_ROWS, height)) for y in range(0, height, _CHUNK_ROWS)]


def _blur(planes: np.ndarray, r: int, aperture: Aperture, half_res_radius_px: float) -> np.ndarray:
    """Aperture blur of radius ``r`` px of (h, w[, c]) float32 ``planes``, same shape.

    From ``half_res_radius_px`` on, on a grid twice coarser: the 2 x 2 box average conserves light,
    the disc of radius r / 2 keeps its one-coarse-pixel anti-aliased rim, and bilinear upsampling
    (pixel centres aligned as OpenCV's resize maps them) brings it back: the rim falls from 50 % to
    10 % within about 1.5 px (a 3x grid: 2.3 px; the former 4-10x grids: 4-10 px).
    """
    if r < half_res_radius_px:
        return _filter(planes, aperture.kernel(r))
    h, w = planes.shape[:2]
    # An odd size is padded by one zero row/column (outside the layer), so cells are exact 2 x 2.
    he, we = h + (h & 1), w + (w & 1)
    if (he, we) != (h, w):
        padded = np.zeros((he, we) + planes.shape[2:], np.float32)
        padded[:h, :w] = planes
        planes = padded
    small = cv2.resize(planes, (we // 2, he // 2), interpolation=cv2.INTER_AREA)
    small = _filter(small, aperture.kernel(r / 2.0))
    out = cv2.resize(small, (we, he), interpolation=cv2.INTER_LINEAR)
    if out.ndim < planes.ndim:
        out = out[..., None]
    return np.ascontiguousarray(out[:h, :w]) if (he, we) != (h, w) else out


def _filter(rgba: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (zero outside the layer) each channel of (h, w, c) ``rgba`` with ``kernel``."""
    if kernel.shape == (1, 1):
        return rgba
    # The kernel is symmetric under 180 degree rotation only for some shapes; flip it so filter2D's
    # correlation is a true convolution (light spreads in the aperture's own orientation).
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    out = cv2.filter2D(rgba, -1, flipped, borderType=cv2.BORDER_CONSTANT)
    if kernel.size < _DIRECT_FILTER_MAX_TAPS:
        return out  # direct sums of non-negative terms: never negative
    return np.maximum(out, 0.0, out=out)  # FFT round-off can leave tiny negatives


#: OpenCV's filter2D convolves float kernels with fewer taps than this directly, larger ones by DFT.
_DIRECT_FILTER_MAX_TAPS = 130
