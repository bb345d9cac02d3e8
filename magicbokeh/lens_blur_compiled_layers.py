"""Compiled (Numba) twins of the layer rules of :mod:`magicbokeh.lens_blur_layers`, and the
per-row indexes the compiled compositor (:mod:`magicbokeh.lens_blur_compiled`) reads.

Each twin computes exactly what its NumPy original does; the tests compare them.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.typed import List

from .lens_blur_fill import _EDGE_TIE_PX, cells, fill_colours
from .lens_blur_layers import JUMP_LAYERS, OCCLUDE_AFTER_LAYERS, LayerRules, for_row_blocks


def _split(radius: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    lower = np.empty(radius.shape, np.int32)
    frac = np.empty(radius.shape, np.float32)
    for_row_blocks(lambda y0, y1: split_radius_rows(radius, lower, frac, y0, y1), radius.shape[0], threads)
    return lower, frac


def _bits(lower: np.ndarray, threads: int) -> np.ndarray:
    bits = np.empty(lower.shape, np.uint8)
    for_row_blocks(lambda y0, y1: occlusion_bits_rows(lower, bits, y0, y1), lower.shape[0], threads)
    return bits


def _light_cells(layers, order, boxes, threads) -> list[np.ndarray]:
    """Compiled twin of :func:`magicbokeh.lens_blur_layers.light_cells`: all layers in one pass
    over the rows (blocks of even height, so that no two threads share a cell), into one buffer."""
    shapes = [cells(box) for box in boxes]
    sizes = [4 * h * w for h, w in shapes]
    offsets = np.cumsum([0] + sizes).astype(np.int64)
    flat = np.zeros(int(offsets[-1]), np.float32)
    first = layers.first
    index = np.full(layers.last - first + 2, -1, np.int64)  # layer - first -> its place in order
    for i, layer in enumerate(order):
        index[layer - first] = i
    box = np.asarray(boxes, np.int64).reshape(-1, 4)
    widths = np.asarray([w for _, w in shapes], np.int64)

    def rows(y0: int, y1: int) -> None:
        _light_cells_rows(layers.lower, layers.frac, layers.linear, first, index, box, widths, offsets, flat, y0, y1)

    for_row_blocks(rows, layers.lower.shape[0], threads, 64)
    return [flat[o : o + n].reshape(h, w, 4) for o, n, (h, w) in zip(offsets, sizes, shapes)]


@njit(cache=True, nogil=True)
def occlusion_bits_rows(lower: np.ndarray, bits: np.ndarray, y0: int, y1: int) -> None:
    """Compiled twin of :func:`magicbokeh.lens_blur_layers.occlusion_bits`, rows ``y0 .. y1``
    of ``bits``. One neighbour offset at a time along a row, without branches, so that the
    compiler vectorises it."""
    h, w = lower.shape
    acc = np.empty(w, np.int32)
    for y in range(y0, y1):
        own = lower[y]
        acc[:] = 0
        for yy in range(max(y - 1, 0), min(y + 2, h)):
            other = lower[yy]
            for dx in range(-1, 2):
                for x in range(max(0, -dx), min(w, w - dx)):
                    t = other[x + dx] - own[x] + JUMP_LAYERS
                    near = np.int32((t >= 0) & (t <= 2 * JUMP_LAYERS))
                    acc[x] |= near << min(max(t, 0), 2 * JUMP_LAYERS)
        for x in range(w):
            bits[y, x] = acc[x]


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
def _light_cells_rows(lower, frac, linear, first, index, box, widths, offsets, flat, y0, y1):
    """Rows ``y0 .. y1`` of :func:`_light_cells`: each pixel adds its light to the cell of each of
    its two layers that has one (``index`` >= 0) and whose box holds it."""
    for y in range(y0, y1):
        for x in range(lower.shape[1]):
            for above in range(2):
                i = index[lower[y, x] + above - first]
                share = frac[y, x] if above else np.float32(1.0) - frac[y, x]
                if i < 0 or share == 0 or not (box[i, 0] <= y < box[i, 1] and box[i, 2] <= x < box[i, 3]):
                    continue
                q = offsets[i] + 4 * (((y - box[i, 0]) >> 1) * widths[i] + ((x - box[i, 2]) >> 1))
                flat[q] += linear[y, x, 0] * share
                flat[q + 1] += linear[y, x, 1] * share
                flat[q + 2] += linear[y, x, 2] * share
                flat[q + 3] += share


def _clamp_weight(level: np.ndarray, gain: float) -> np.ndarray:
    """Compiled twin of :func:`magicbokeh.lens_blur_fill.clamp_weight`, in place."""
    _clamp_cells(level.reshape(-1, level.shape[2]), np.float32(gain))
    return level


def _blend_up(level: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Compiled twin of :func:`magicbokeh.lens_blur_fill.blend_up`, in place."""
    _blend_cells(level.reshape(-1, level.shape[2]), up.reshape(-1, up.shape[2]))
    return level


@njit(cache=True, nogil=True)
def _clamp_cells(cells, gain):
    for i in range(cells.shape[0]):
        alpha = cells[i, 3]
        scale = min(gain * alpha, np.float32(1.0)) / max(alpha, np.float32(1e-6))
        for c in range(cells.shape[1]):
            cells[i, c] *= scale


@njit(cache=True, nogil=True)
def _blend_cells(cells, up):
    for i in range(cells.shape[0]):
        keep = np.float32(1.0) - cells[i, 3]
        for c in range(cells.shape[1]):
            cells[i, c] += up[i, c] * keep


@njit(cache=True, nogil=True, inline="always")
def coarse_taps(i, n):
    """Cell index and weights of pixel ``i`` for a 2x bilinear upsampling of ``n`` cells (OpenCV's
    INTER_LINEAR): the pixel centre sits at cell coordinate i / 2 - 0.25; clamped at both ends."""
    k = (i - 1) // 2 if i % 2 == 0 else i // 2
    w1 = np.float32(0.75) if i % 2 == 0 else np.float32(0.25)
    if k < 0:
        return 0, np.float32(1.0), np.float32(0.0)
    if k >= n - 1:
        return n - 1, np.float32(1.0), np.float32(0.0)
    return k, np.float32(1.0) - w1, w1


def _bands(radius, order, boxes, dists, colours, threads):
    """Compiled twin of :func:`magicbokeh.lens_blur_layers.fill_bands`: one pass over the rows for
    all layers (each row keeps the running nearest edge distance of the layers done so far), run
    twice on ``threads`` threads: to count each block's band pixels, then to list them in place."""
    height = radius.shape[0]
    layer = np.asarray(order, np.int64)
    box = np.asarray(boxes, np.int64).reshape(-1, 4)
    dists, colours = List(dists), List(colours)
    blocks = -(-height // _BAND_BLOCK_ROWS)
    counts = np.zeros((blocks + 1, layer.size), np.int64)

    def count(y0: int, y1: int) -> None:
        counts[y0 // _BAND_BLOCK_ROWS + 1] = _band_rows(radius, layer, box, dists, colours, y0, y1, _EDGE_TIE_PX, None)

    for_row_blocks(count, height, threads, _BAND_BLOCK_ROWS)
    starts = np.cumsum(counts, axis=0)  # block b of layer i fills starts[b, i] .. starts[b + 1, i]
    out = [(np.empty(n, np.int32), np.empty(n, np.int32), np.empty((n, 6), np.float32)) for n in starts[-1]]
    listing = (List([o[0] for o in out]), List([o[1] for o in out]), List([o[2] for o in out]))

    def fill(y0: int, y1: int) -> None:
        cursor = starts[y0 // _BAND_BLOCK_ROWS].copy()
        _band_rows(radius, layer, box, dists, colours, y0, y1, _EDGE_TIE_PX, (cursor, *listing))

    for_row_blocks(fill, height, threads, _BAND_BLOCK_ROWS)
    return out


#: Rows per block of the band pass (each block counts, then lists, its own band pixels).
_BAND_BLOCK_ROWS = 64


@njit(cache=True, nogil=True)
def _band_rows(radius, layer, box, dists, colours, y0, y1, tie, listing):
    """Rows ``y0 .. y1`` of :func:`_bands`: returns each layer's count of band pixels; with
    ``listing`` = (cursor, ys, xs, values), also writes them at each layer's cursor."""
    width = radius.shape[1]
    slack = np.float32(tie)
    counts = np.zeros(layer.size, np.int64)
    closest = np.empty(width, np.float32)
    for y in range(y0, y1):
        closest[:] = np.inf
        for i in range(layer.size):
            by0, by1, bx0, bx1 = box[i, 0], box[i, 1], box[i, 2], box[i, 3]
            if y < by0 or y >= by1:
                continue
            dist = dists[i]
            drow = (y - by0) >> 1
            nearer_than = np.float32(layer[i] + OCCLUDE_AFTER_LAYERS)
            extra = np.float32(abs(layer[i]) + 2)
            if listing is not None:  # this layer's lists, looked up once per row
                cursor, all_ys, all_xs, all_values = listing
                ys, xs, values, filled = all_ys[i], all_xs[i], all_values[i], colours[i]
                k = cursor[i]
            n = 0
            for x in range(bx0, bx1):
                d = dist[drow, (x - bx0) >> 1]
                r = radius[y, x]
                if r >= nearer_than and d <= abs(r) + extra and d <= closest[x] + slack:
                    if listing is not None:
                        ys[k + n] = y
                        xs[k + n] = x
                        _sample(filled, y - by0, x - bx0, values, k + n)
                    n += 1
                closest[x] = min(closest[x], d)
            counts[i] += n
            if listing is not None:
                cursor[i] = k + n
    return counts


@njit(cache=True, nogil=True, inline="always")
def _sample(filled, y, x, out, k):
    """Compiled twin of :func:`magicbokeh.lens_blur_fill.sample_cells` at one pixel, into the
    fill values ``out[k]`` (colour and coverage, member occlusion 0, fill occlusion)."""
    h, w, c = filled.shape
    ky, wy0, wy1 = coarse_taps(y, h)
    kx, wx0, wx1 = coarse_taps(x, w)
    ky1, kx1 = min(ky + 1, h - 1), min(kx + 1, w - 1)
    for ch in range(c):
        top = wx0 * filled[ky, kx, ch] + wx1 * filled[ky, kx1, ch]
        bottom = wx0 * filled[ky1, kx, ch] + wx1 * filled[ky1, kx1, ch]
        out[k, ch] = wy0 * top + wy1 * bottom
    out[k, 4] = 0.0
    out[k, 5] = out[k, 3]


#: Compiled twins of :data:`magicbokeh.lens_blur_layers.NUMPY_RULES` (same layers, faster).
COMPILED_RULES = LayerRules(
    split=_split,
    bits=_bits,
    light_cells=_light_cells,
    colours=lambda sums: fill_colours(sums, clamp=_clamp_weight, blend=_blend_up),
    bands=_bands,
)


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


#: The occlusion bits of layers other than a pixel's own two (d = 0, 1): most pixels have none.
_EXTRA_BITS = ((1 << (2 * JUMP_LAYERS + 1)) - 1) & ~(0b11 << JUMP_LAYERS)


@njit(cache=True, nogil=True)
def _count_extras(lower, bits, first, start, y0, y1):
    for y in range(y0, y1):
        for x in range(lower.shape[1]):
            if not bits[y, x] & _EXTRA_BITS:
                continue
            for d in range(-JUMP_LAYERS, JUMP_LAYERS + 1):
                if _extra(d, bits[y, x]):
                    start[y, lower[y, x] + d - first + 1] += 1


@njit(cache=True, nogil=True)
def _list_extras(lower, bits, first, start, out, y0, y1):
    fill = np.empty(start.shape[1], np.int64)
    for y in range(y0, y1):
        fill[:] = start[y]
        for x in range(lower.shape[1]):
            if not bits[y, x] & _EXTRA_BITS:
                continue
            for d in range(-JUMP_LAYERS, JUMP_LAYERS + 1):
                if _extra(d, bits[y, x]):
                    v = lower[y, x] + d - first
                    out[fill[v]] = x
                    fill[v] += 1
