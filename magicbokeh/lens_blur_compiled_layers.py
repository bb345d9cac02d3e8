"""Compiled (Numba) twins of the layer rules of :mod:`magicbokeh.lens_blur_layers`, and the
per-row indexes the compiled compositor (:mod:`magicbokeh.lens_blur_compiled`) reads.

Each twin computes exactly what its NumPy original does; the tests compare them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .lens_blur_fill import _EDGE_TIE_PX, cells, fill_colours
from .lens_blur_layers import JUMP_LAYERS, OCCLUDE_AFTER_LAYERS, LayerRules, for_row_blocks


#: Numba options of the kernels that allocate nothing: they run without Numba's reference
#: counting (``_nrt=False``, as Numba's own hot helpers do). With it, every call of an inlined
#: helper that takes arrays increments and decrements their counts atomically, which measured three
#: to four times the arithmetic of gathering a pixel. Kernels that allocate keep the default.
NO_REFCOUNT = dict(cache=True, nogil=True, _nrt=False)


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

    for_row_blocks(rows, layers.lower.shape[0], threads)  # blocks of 128 rows: even
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
def _clamp_cells(grid, gain):
    for i in range(grid.shape[0]):
        alpha = grid[i, 3]
        scale = min(gain * alpha, np.float32(1.0)) / max(alpha, np.float32(1e-6))
        for c in range(grid.shape[1]):
            grid[i, c] *= scale


@njit(cache=True, nogil=True)
def _blend_cells(grid, up):
    for i in range(grid.shape[0]):
        keep = np.float32(1.0) - grid[i, 3]
        for c in range(grid.shape[1]):
            grid[i, c] += up[i, c] * keep


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
    shapes = np.asarray([cells(b) for b in boxes], np.int64).reshape(-1, 2)
    dist_flat, dist_start = _packed(dists)
    colour_flat, colour_start = _packed(colours)
    # Cells farther than any band reaches (+ the tie slack) can change no band (see _band_rows).
    beyond = float(np.abs(radius).max()) + float(np.abs(layer).max()) + 2.0 + _EDGE_TIE_PX
    grids = (layer, box, shapes, dist_flat, dist_start, colour_flat, colour_start, beyond)
    blocks = -(-height // _BAND_BLOCK_ROWS)
    counts = np.zeros((blocks + 1, layer.size), np.int64)

    def count(y0: int, y1: int) -> None:
        scratch = np.empty(radius.shape[1], np.float32)
        _band_rows(radius, *grids, y0, y1, _EDGE_TIE_PX, counts[y0 // _BAND_BLOCK_ROWS + 1], scratch, None)

    for_row_blocks(count, height, threads, _BAND_BLOCK_ROWS)
    # Layer i's pixels are out[start[i] : start[i + 1]], block b's from start[i] + before[b, i].
    before = np.cumsum(counts, axis=0)
    start = np.concatenate([[0], np.cumsum(before[-1])])
    ys, xs, values = np.empty(start[-1], np.int32), np.empty(start[-1], np.int32), np.empty((start[-1], 6), np.float32)

    def fill(y0: int, y1: int) -> None:
        cursor = start[:-1] + before[y0 // _BAND_BLOCK_ROWS]
        scratch = np.empty(radius.shape[1], np.float32)
        _band_rows(radius, *grids, y0, y1, _EDGE_TIE_PX, np.zeros(layer.size, np.int64), scratch, (cursor, ys, xs, values))

    for_row_blocks(fill, height, threads, _BAND_BLOCK_ROWS)
    return [(ys[a:b], xs[a:b], values[a:b]) for a, b in zip(start[:-1], start[1:])]


def _packed(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One flat float32 buffer holding ``arrays`` and each one's start in it: the buffer they are
    already views of (as :func:`magicbokeh.lens_blur_layers.add_fills` and the compiled cell light
    make them; no copy), else a copy."""
    owner = arrays[0].base if arrays else None
    if owner is not None and owner.ndim == 1 and owner.dtype == np.float32 and owner.flags.c_contiguous:
        if all(a.base is owner and a.flags.c_contiguous for a in arrays):
            origin = owner.__array_interface__["data"][0]
            starts = [(a.__array_interface__["data"][0] - origin) // owner.itemsize for a in arrays]
            return owner, np.asarray(starts, np.int64)
    sizes = [a.size for a in arrays]
    flat = np.concatenate([np.ascontiguousarray(a, dtype=np.float32).ravel() for a in arrays] or [np.zeros(0, np.float32)])
    return flat, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


#: Rows per block of the band pass (each block counts, then lists, its own band pixels).
_BAND_BLOCK_ROWS = 64


@njit(**NO_REFCOUNT)
def _band_rows(radius, layer, box, shapes, dist, dist_start, colour, colour_start, beyond, y0, y1, tie, counts, closest, listing):
    """Rows ``y0 .. y1`` of :func:`_bands`: adds each layer's count of band pixels to ``counts``;
    with ``listing`` = (cursor, ys, xs, values), also writes them at each layer's cursor. Layer i's
    ``shapes[i]`` cells (distances and filled colours) are row-major in ``dist`` and ``colour``
    from its starts; ``closest`` is a row of scratch.

    A pixel farther than ``beyond`` (the largest reach of any band, plus the tie slack) from a
    layer's edge is skipped for that layer: it is outside that band, and keeping its distance in
    ``closest`` could change no later test (which needs a distance within the reach, and so within
    the slack of this one)."""
    slack = np.float32(tie)
    skip = np.float32(beyond)
    for y in range(y0, y1):
        closest[:] = np.inf
        for i in range(layer.size):
            by0, by1, bx0, bx1 = box[i, 0], box[i, 1], box[i, 2], box[i, 3]
            if y < by0 or y >= by1:
                continue
            h, w = shapes[i, 0], shapes[i, 1]
            row = dist_start[i] + ((y - by0) >> 1) * w
            nearer_than = np.float32(layer[i] + OCCLUDE_AFTER_LAYERS)
            extra = np.float32(abs(layer[i]) + 2)
            n = 0
            for x in range(bx0, bx1):
                d = dist[row + ((x - bx0) >> 1)]
                if d > skip:
                    continue
                r = radius[y, x]
                if r >= nearer_than and d <= abs(r) + extra and d <= closest[x] + slack:
                    if listing is not None:
                        cursor, ys, xs, values = listing
                        k = cursor[i] + n
                        ys[k] = y
                        xs[k] = x
                        _sample(colour, colour_start[i], h, w, y - by0, x - bx0, values, k)
                    n += 1
                closest[x] = min(closest[x], d)
            counts[i] += n
            if listing is not None:
                listing[0][i] += n


@njit(**NO_REFCOUNT, inline="always")
def _sample(colour, start, h, w, y, x, out, k):
    """Compiled twin of :func:`magicbokeh.lens_blur_fill.sample_cells` at pixel (y, x) of a box
    whose (h, w) filled cells are row-major in ``colour`` from ``start``, into the fill values
    ``out[k]`` (colour and coverage, member occlusion 0, fill occlusion)."""
    ky, wy0, wy1 = coarse_taps(y, h)
    kx, wx0, wx1 = coarse_taps(x, w)
    ky1, kx1 = min(ky + 1, h - 1), min(kx + 1, w - 1)
    for ch in range(4):
        top = wx0 * colour[start + 4 * (ky * w + kx) + ch] + wx1 * colour[start + 4 * (ky * w + kx1) + ch]
        bottom = wx0 * colour[start + 4 * (ky1 * w + kx) + ch] + wx1 * colour[start + 4 * (ky1 * w + kx1) + ch]
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
