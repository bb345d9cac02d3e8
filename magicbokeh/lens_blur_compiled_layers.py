"""Compiled (Numba) twins of the layer rules of :mod:`magicbokeh.lens_blur_layers`, and the
per-row indexes the compiled compositor (:mod:`magicbokeh.lens_blur_compiled`) reads.

Each twin computes exactly what its NumPy original does; the tests compare them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .lens_blur_fill import _EDGE_TIE_PX
from .lens_blur_layers import JUMP_LAYERS, LayerRules, for_row_blocks


def _split(radius: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    lower = np.empty(radius.shape, np.int32)
    frac = np.empty(radius.shape, np.float32)
    for_row_blocks(lambda y0, y1: split_radius_rows(radius, lower, frac, y0, y1), radius.shape[0], threads)
    return lower, frac


def _bits(lower: np.ndarray, threads: int) -> np.ndarray:
    bits = np.empty(lower.shape, np.uint8)
    for_row_blocks(lambda y0, y1: occlusion_bits_rows(lower, bits, y0, y1), lower.shape[0], threads)
    return bits


def _band(radius, layer, dist, box, edge_dist, nearer_than) -> tuple[np.ndarray, np.ndarray]:
    return hidden_band_box(radius, dist, edge_dist, *box, abs(layer) + 2.0, float(nearer_than), _EDGE_TIE_PX)


#: Compiled twins of :data:`magicbokeh.lens_blur_layers.NUMPY_RULES` (same layers, faster).
COMPILED_RULES = LayerRules(
    split=_split,
    bits=_bits,
    light_box=lambda layers, layer, box: layer_light_box(layers.lower, layers.frac, layers.linear, layer, *box),
    band=_band,
)


@njit(cache=True, nogil=True)
def occlusion_bits_rows(lower: np.ndarray, bits: np.ndarray, y0: int, y1: int) -> None:
    """Compiled twin of :func:`magicbokeh.lens_blur_layers.occlusion_bits`, rows ``y0 .. y1``
    of ``bits``."""
    h, w = lower.shape
    for y in range(y0, y1):
        for x in range(w):
            own = lower[y, x]
            b = 0
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    d = lower[yy, xx] - own
                    if -JUMP_LAYERS <= d <= JUMP_LAYERS:
                        b |= 1 << (d + JUMP_LAYERS)
            bits[y, x] = b


@njit(cache=True, nogil=True)
def split_radius_rows(radius: np.ndarray, lower: np.ndarray, frac: np.ndarray, y0: int, y1: int) -> None:
    """Compiled twin of :func:`magicbokeh.lens_blur_layers.split_radius`, rows ``y0 .. y1``."""
    for y in range(y0, y1):
        for x in range(radius.shape[1]):
            r = radius[y, x]
            f = np.floor(r)
            lower[y, x] = np.int32(f)
            frac[y, x] = r - f


@njit(cache=True, nogil=True)
def layer_light_box(lower, frac, linear, layer, y0, y1, x0, x1):
    """Compiled twin of :func:`magicbokeh.lens_blur_layers.layer_light` in a box."""
    out = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    for y in range(y0, y1):
        for x in range(x0, x1):
            w = np.float32(0.0)
            if lower[y, x] == layer:
                w = np.float32(1.0) - frac[y, x]
            elif lower[y, x] == layer - 1:
                w = frac[y, x]
            if w != 0:
                out[y - y0, x - x0, 0] = linear[y, x, 0] * w
                out[y - y0, x - x0, 1] = linear[y, x, 1] * w
                out[y - y0, x - x0, 2] = linear[y, x, 2] * w
                out[y - y0, x - x0, 3] = w
    return out


@njit(cache=True, nogil=True)
def hidden_band_box(radius, dist, edge_dist, y0, y1, x0, x1, reach_extra, nearer_than, tie):
    """Compiled twin of :func:`magicbokeh.lens_blur_fill.hidden_band` for a box inside the photo:
    the band's pixels (rows, columns in the box, row-major); ``edge_dist`` is updated in place."""
    extra = np.float32(reach_extra)
    slack = np.float32(tie)
    ys = np.empty((y1 - y0) * (x1 - x0), np.int64)
    xs = np.empty((y1 - y0) * (x1 - x0), np.int64)
    n = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            d = dist[y - y0, x - x0]
            r = radius[y, x]
            closest = edge_dist[y, x]
            if r >= nearer_than and d <= abs(r) + extra and d <= closest + slack:
                ys[n] = y - y0
                xs[n] = x - x0
                n += 1
            if d < closest:
                edge_dist[y, x] = d
    return ys[:n].copy(), xs[:n].copy()


def row_buckets(lower: np.ndarray, first: int, n: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its columns sorted by ``lower - first`` (0 .. n - 1), and where each value starts:
    columns of value v in row y are ``order[y, start[y, v] : start[y, v + 1]]``."""
    h, w = lower.shape
    order = np.empty((h, w), np.int32)
    start = np.zeros((h, n + 1), np.int32)
    for_row_blocks(lambda y0, y1: _row_buckets(lower, first, n, order, start, y0, y1), h, threads)
    return order, start


@njit(cache=True, nogil=True)
def _row_buckets(lower, first, n, order, start, y0, y1):
    fill = np.empty(n + 1, np.int32)
    for y in range(y0, y1):
        for x in range(lower.shape[1]):
            start[y, lower[y, x] - first + 1] += 1
        for v in range(n):
            start[y, v + 1] += start[y, v]
        fill[:] = start[y]
        for x in range(lower.shape[1]):
            v = lower[y, x] - first
            order[y, fill[v]] = x
            fill[v] += 1


def occlusion_extras(lower: np.ndarray, bits: np.ndarray, first: int, n: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that occlude in a layer other than their own two (the widening of the occlusion into
    neighbouring layers), per row sorted by that layer: columns ``x[start[y, L - first] :
    start[y, L - first + 1]]``. A pixel's own layer and the one above are read from the buckets."""
    h = lower.shape[0]
    start = np.zeros((h, n + 1), np.int64)
    for_row_blocks(lambda y0, y1: _count_extras(lower, bits, first, start, y0, y1), h, threads)
    flat = start.reshape(-1)
    np.cumsum(flat, out=flat)  # row y's slice of layer v: start[y, v] .. start[y, v + 1]
    out = np.empty(int(flat[-1]), np.int32)
    for_row_blocks(lambda y0, y1: _list_extras(lower, bits, first, start, out, y0, y1), h, threads)
    return out, start


@njit(cache=True, nogil=True, inline="always")
def _extra(d, b):
    return (d < 0 or d > 1) and (b >> (d + JUMP_LAYERS)) & 1


@njit(cache=True, nogil=True)
def _count_extras(lower, bits, first, start, y0, y1):
    for y in range(y0, y1):
        for x in range(lower.shape[1]):
            for d in range(-JUMP_LAYERS, JUMP_LAYERS + 1):
                if _extra(d, bits[y, x]):
                    start[y, lower[y, x] + d - first + 1] += 1


@njit(cache=True, nogil=True)
def _list_extras(lower, bits, first, start, out, y0, y1):
    fill = np.empty(start.shape[1], np.int64)
    for y in range(y0, y1):
        fill[:] = start[y]
        for x in range(lower.shape[1]):
            for d in range(-JUMP_LAYERS, JUMP_LAYERS + 1):
                if _extra(d, bits[y, x]):
                    v = lower[y, x] + d - first
                    out[fill[v]] = x
                    fill[v] += 1
