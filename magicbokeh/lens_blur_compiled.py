"""Compiled (Numba) compositor for the classical renderer: cost grows with the blur radius, not
with the number of depth layers.

Each pixel spreads its light over the aperture kernel of its layer as *row differences*: a kernel
row is a run of nearly equal values, so its horizontal difference has ~5 non-zero taps whatever the
radius, and a running sum along the row rebuilds it. The photo is processed in bands of rows; for
each band the layer groups are visited near to far: their pixels (and those within a kernel's
reach) are scattered into a small difference buffer, and one pass along each row rebuilds the
blurred light, occlusion and fill and composites them front to back. Layers blurred by at least
``half_res_radius_px`` are scattered on a grid twice coarser (2 x 2 average, kernel of half the
radius) and read back bilinearly, exactly as the reference resamples them.

The arithmetic equals :func:`magicbokeh.lens_blur_reference.composite_layers` (a dense convolution
per layer) up to float rounding; the tests compare the two. Bands are independent and each is
computed by one thread, so the result does not depend on the thread count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import as_completed
from functools import lru_cache

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.extending import intrinsic

from .apertures import Aperture
from .lens_blur_compiled_layers import NO_REFCOUNT, coarse_taps, occlusion_extras, row_buckets
from .lens_blur_layers import JUMP_LAYERS, Layers, composite_groups, worker_pool

#: Rows per band. Even, so bands start on the coarse grid; tall enough that the pixels within a
#: kernel's reach above and below are not revisited too often.
BAND_ROWS = 64
_EMPTY = 1 << 30  # an empty touched box starts at this column
#: Coverage, occlusion and fill below this are round-off of the running sums (a disc's own
#: smallest tap is ~1e-4 of a pixel's light): such pixels get nothing from the group.
_NOTHING = np.float32(1e-8)


def composite_layers(
    layers: Layers,
    aperture: Aperture,
    half_res_radius_px: float,
    *,
    threads: int = 1,
    progress: Callable[[float], None] | None = None,
    finish: Callable[[slice, np.ndarray], None] | None = None,
) -> np.ndarray | None:
    """(H, W, 4) float32: premultiplied linear colour and coverage, all layers composited.

    With ``finish``, the worker calls ``finish(rows, colour)`` on each band as it is done instead,
    with the band's colour in a buffer of its own that is then reused (no frame-sized array: at
    12 MP that one would be 190 MB written once), and this returns None."""
    lower = np.ascontiguousarray(layers.lower, dtype=np.int32)
    height, width = lower.shape
    first, last = layers.first, layers.last
    buckets, bucket_start = row_buckets(lower, first, last - first, threads)
    extra_x, extra_start = occlusion_extras(lower, layers.occlusion_bits, first, last - first + 1, threads)
    groups = composite_groups(first, last, half_res_radius_px, layers.fills)
    table = _kernel_table(aperture, tuple(map(tuple, groups)), half_res_radius_px, width)
    group_fill = np.asarray([any(L in layers.fills for L in g) for g in groups], np.bool_)
    fill_ptr, fill_x, fill_v = _fill_rows(layers, first, last, height)
    colour = np.zeros((height, width, 4), np.float32) if finish is None else None

    def band(y0: int) -> None:
        scratch = _Scratch.for_thread(width, table)
        y1 = min(y0 + BAND_ROWS, height)
        if colour is None:
            band_colour = scratch.colour[: (y1 - y0) * width * 4]
            band_colour[:] = 0.0
        else:
            band_colour = colour[y0:y1].reshape(-1)
        _render_band(
            y0, y1, lower, layers.frac, layers.linear, layers.occlusion_bits, buckets, bucket_start,
            extra_x, extra_start, first, table.layer, table.group_start, table.group_coarse,
            group_fill, table.half, table.row_start, table.offset, table.value,
            fill_ptr, fill_x, fill_v, band_colour, *scratch.arrays,
        )  # fmt: skip
        if finish is not None:
            finish(slice(y0, y1), band_colour.reshape(y1 - y0, width, 4))

    starts = list(range(0, height, BAND_ROWS))
    pool = worker_pool(threads)
    if pool is None:
        for i, y0 in enumerate(starts):
            band(y0)
            if progress is not None:
                progress((i + 1) / len(starts))
        return colour
    futures = [pool.submit(band, y0) for y0 in starts]
    for i, future in enumerate(as_completed(futures)):
        future.result()
        if progress is not None:
            progress((i + 1) / len(starts))
    return colour


@lru_cache(maxsize=8)
def _kernel_table(aperture: Aperture, groups: tuple[tuple[int, ...], ...], half_res_radius_px: float, width: int) -> "_KernelTable":
    """The (read-only) table of a render setting, kept for the next render with the same one."""
    return _KernelTable(aperture, [list(g) for g in groups], half_res_radius_px, width)


class _KernelTable:
    """Row differences of every layer's kernel, flattened for the compiled code.

    Per layer (in compositing order): its radius ``layer``, kernel half size ``half``, and per
    kernel row the slice ``row_start[i, ky] : row_start[i, ky + 1]`` of taps, each an ``offset``
    into the band's flat difference buffer (row stride included) and a ``value``. Per group: its
    first layer (``group_start``) and whether it is on the coarse grid.
    """

    def __init__(self, aperture: Aperture, groups: list[list[int]], half_res_radius_px: float, width: int) -> None:
        coarse_flags = [abs(g[0]) >= half_res_radius_px for g in groups]
        kernels = {}
        for group, coarse in zip(groups, coarse_flags):
            for L in group:
                r = abs(L)
                kernels[L] = aperture.kernel(r / 2.0 if coarse else float(r)).astype(np.float64)
        halves = {L: k.shape[0] // 2 for L, k in kernels.items()}
        fine = [halves[L] for g, c in zip(groups, coarse_flags) if not c for L in g]
        coarse = [halves[L] for g, c in zip(groups, coarse_flags) if c for L in g]
        self.pad = max(fine, default=0) + 2
        self.coarse_pad = max(coarse, default=0) + 2
        self.stride = width + 2 * self.pad
        self.coarse_stride = (width + 1) // 2 + 2 * self.coarse_pad
        order = [L for g in groups for L in g]
        n_rows = 2 * max(halves.values()) + 1
        self.layer = np.asarray(order, np.int32)
        self.half = np.asarray([halves[L] for L in order], np.int32)
        self.row_start = np.zeros((len(order), n_rows + 1), np.int64)
        offsets, values = [], []
        total = 0
        for i, (L, group_coarse) in enumerate(
            (L, c) for g, c in zip(groups, coarse_flags) for L in g
        ):
            kernel, h = kernels[L], halves[L]
            stride = self.coarse_stride if group_coarse else self.stride
            self.row_start[i, :] = total
            diff = np.diff(np.pad(kernel, ((0, 0), (1, 1))), axis=1)  # diff[:, j] = k[j] - k[j - 1]
            for ky, row in enumerate(diff):
                (cols,) = np.nonzero(row)
                offsets.append((ky - h) * stride + cols - h)
                values.append(row[cols])
                total += cols.size
                self.row_start[i, ky + 1 :] = total
        self.offset = np.concatenate(offsets).astype(np.int64)
        self.value = np.concatenate(values).astype(np.float32)
        self.group_start = np.cumsum([0] + [len(g) for g in groups]).astype(np.int32)
        self.group_coarse = np.asarray(coarse_flags, np.bool_)


class _Scratch:
    """One thread's band buffers, left zeroed by the compiled code and kept for the thread's next
    band and render of the same width and kernel table (fresh buffers would be written for the
    first time on every render, which costs about as much as the work in them)."""

    _local = threading.local()

    @classmethod
    def for_thread(cls, width: int, table: _KernelTable) -> "_Scratch":
        kept = getattr(cls._local, "scratch", None)
        if kept is None or kept.key != cls._key(width, table):
            kept = cls._local.scratch = cls(width, table)
        return kept

    @staticmethod
    def _key(width: int, table: _KernelTable) -> tuple[int, ...]:
        """What the buffers' sizes and paddings depend on."""
        return width, table.pad, table.stride, table.coarse_pad, table.coarse_stride

    def __init__(self, width: int, table: _KernelTable) -> None:
        self.key = self._key(width, table)
        crows = BAND_ROWS // 2 + 2
        self.colour = np.zeros(BAND_ROWS * width * 4, np.float32)  # a band's colour, when finished per band
        self.arrays = (
            np.zeros(BAND_ROWS * width, np.float32),  # summed occlusion S
            np.ones(BAND_ROWS * width, np.float32),  # light passing the fills F
            np.zeros(BAND_ROWS * table.stride * 4, np.float32),  # light row differences
            np.zeros(BAND_ROWS * table.stride * 2, np.float32),  # occlusion, fill differences
            np.zeros(crows * table.coarse_stride * 4, np.float32),  # the same on the coarse grid
            np.zeros(crows * table.coarse_stride * 2, np.float32),
            np.zeros(width * 4, np.float32),  # one gathered source row: light
            np.zeros(width * 2, np.float32),  # and occlusion, fill
            np.zeros(width, np.int32),  # its touched cells
            np.zeros(width, np.bool_),
            np.zeros(4, np.int64),  # touched box: first row, last row, first column, last column
            table.pad,
            table.stride,
            table.coarse_pad,
            table.coarse_stride,
        )


def _fill_rows(layers: Layers, first: int, last: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill pixels of all layers in one list, with per (layer - first, row) start offsets."""
    ptr = np.zeros((last - first + 1, height + 1), np.int64)
    xs, vs = [np.zeros(0, np.int32)], [np.zeros((0, 6), np.float32)]
    offset = 0
    for L in range(first, last + 1):
        items = layers.fills.get(L)
        ptr[L - first] = offset
        if items is None:
            continue
        ptr[L - first, 1:] = offset + np.cumsum(np.bincount(items.ys, minlength=height))
        offset += items.ys.size
        xs.append(items.xs)
        vs.append(items.values)
    return ptr, np.concatenate(xs, dtype=np.int32), np.concatenate(vs, dtype=np.float32)


@intrinsic
def _axpy4(typingctx, dst, i, k, src, j):
    """``dst[i : i + 4] += k * src[j : j + 4]`` (float32 arrays) as one 4-lane load, multiply, add
    and store: the same arithmetic as four scalar updates, which Numba does not vectorise."""
    flat = (isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1 and a.layout == "C" for a in (dst, src))
    if not all(flat):
        return None  # only for the flat float32 buffers of this module
    signature = types.void(dst, i, k, src, j)

    def codegen(context, builder, sig, args):
        dst_v, i_v, k_v, src_v, j_v = args
        lanes = ir.VectorType(ir.FloatType(), 4)
        dst_arr = context.make_array(sig.args[0])(context, builder, dst_v)
        src_arr = context.make_array(sig.args[3])(context, builder, src_v)
        dst_ptr = builder.bitcast(builder.gep(dst_arr.data, [i_v]), lanes.as_pointer())
        src_ptr = builder.bitcast(builder.gep(src_arr.data, [j_v]), lanes.as_pointer())
        scale = builder.insert_element(ir.Constant(lanes, ir.Undefined), k_v, ir.Constant(ir.IntType(32), 0))
        scale = builder.shuffle_vector(scale, ir.Constant(lanes, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 4), [0] * 4))
        total = builder.fadd(builder.load(dst_ptr, align=4), builder.fmul(scale, builder.load(src_ptr, align=4)))
        builder.store(total, dst_ptr, align=4)
        return context.get_dummy_value()

    return signature, codegen


@njit(**NO_REFCOUNT, inline="always")
def _rows(y, h, row0, rows):
    """Kernel rows of a source at band row ``y - row0`` that land inside the band."""
    return max(0, row0 - y + h), min(2 * h + 1, row0 + rows - y + h)


@njit(**NO_REFCOUNT, inline="always")
def _add(cell, scale, v0, v1, v2, v3, v4, v5, acc4, acc2, touched, is_touched, n):
    """Add ``scale`` times one source to cell ``cell`` of the row being gathered."""
    if not is_touched[cell]:
        is_touched[cell] = True
        touched[n] = cell
        n += 1
    acc4[4 * cell] += scale * v0
    acc4[4 * cell + 1] += scale * v1
    acc4[4 * cell + 2] += scale * v2
    acc4[4 * cell + 3] += scale * v3
    acc2[2 * cell] += scale * np.float32(v4)
    acc2[2 * cell + 1] += scale * np.float32(v5)
    return n


@njit(**NO_REFCOUNT)
def _gather(y, L, first, last_bucket, shift, scale, frac, linear, bits, buckets, bucket_start, extra_x, extra_start, fill_ptr, fill_x, fill_v, acc4, acc2, touched, is_touched, n):  # fmt: skip
    """Gather what row ``y`` gives layer ``L`` into cells ``x >> shift`` (scaled by ``scale``):
    light and occlusion of the pixels of radius in [L, L + 1) (share 1 - frac) and [L - 1, L)
    (share frac), the occlusion widened into the layer, and its fill."""
    fi = L - first
    if L <= last_bucket:
        for j in range(bucket_start[y, L - first], bucket_start[y, L - first + 1]):
            x = buckets[y, j]
            w = np.float32(1.0) - frac[y, x]
            n = _add(x >> shift, scale, linear[y, x, 0] * w, linear[y, x, 1] * w, linear[y, x, 2] * w, w, 1.0, 0.0, acc4, acc2, touched, is_touched, n)  # fmt: skip
    if L - 1 >= first:
        for j in range(bucket_start[y, L - 1 - first], bucket_start[y, L - first]):
            x = buckets[y, j]
            w = frac[y, x]
            occ = np.float32((bits[y, x] >> (JUMP_LAYERS + 1)) & 1)
            if w > 0 or occ > 0:
                n = _add(x >> shift, scale, linear[y, x, 0] * w, linear[y, x, 1] * w, linear[y, x, 2] * w, w, occ, 0.0, acc4, acc2, touched, is_touched, n)  # fmt: skip
    for j in range(extra_start[y, fi], extra_start[y, fi + 1]):
        n = _add(extra_x[j] >> shift, scale, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, acc4, acc2, touched, is_touched, n)
    for j in range(fill_ptr[fi, y], fill_ptr[fi, y + 1]):
        n = _add(fill_x[j] >> shift, scale, fill_v[j, 0], fill_v[j, 1], fill_v[j, 2], fill_v[j, 3], fill_v[j, 4], fill_v[j, 5], acc4, acc2, touched, is_touched, n)  # fmt: skip
    return n


@njit(**NO_REFCOUNT)
def _emit(centre0, e0, e1, offset, value, acc4, acc2, touched, is_touched, n, dl, dm, box, r0, r1):
    """Scatter a gathered row (``n`` touched cells) through kernel taps ``e0 .. e1`` into the
    row-difference buffers (``centre0``: flat buffer index of column 0 of the source row, padding
    included), mark the touched box (rows ``r0 .. r1``) and clear the gathered row.

    The touched cells are scattered in runs (gaps of up to :data:`_RUN_GAP` empty cells), each run
    one tap at a time as contiguous multiply-adds over its whole span, which the compiler
    vectorises; cells of runs shorter than :data:`_MIN_RUN` one at a time."""
    lo = touched[0]
    hi = touched[0]
    for t in range(1, n):
        lo = min(lo, touched[t])
        hi = max(hi, touched[t])
    c = lo
    while c <= hi:
        start = last = c  # c is touched: the scan only stops on touched cells
        c += 1
        while c <= hi and c - last <= _RUN_GAP:
            if is_touched[c]:
                last = c
            c += 1
        if last - start + 1 >= _MIN_RUN:
            _scatter_span(start, last, centre0, e0, e1, offset, value, acc4, acc2, dl, dm)
        else:
            for cell in range(start, last + 1):
                if is_touched[cell]:
                    _scatter_cell(cell, centre0, e0, e1, offset, value, acc4, acc2, dl, dm)
        while c <= hi and not is_touched[c]:
            c += 1
    for t in range(n):
        cell = touched[t]
        is_touched[cell] = False
        for ch in range(4):
            acc4[4 * cell + ch] = 0.0
        acc2[2 * cell] = 0.0
        acc2[2 * cell + 1] = 0.0
    box[0] = min(box[0], r0)
    box[1] = max(box[1], r1)
    box[2] = min(box[2], lo)
    box[3] = max(box[3], hi)


#: Empty cells a run of touched cells may bridge: scattering a few empty cells as part of a
#: vectorised run costs less than starting another.
_RUN_GAP = 8
#: Runs shorter than this are scattered cell by cell.
_MIN_RUN = 3


@njit(**NO_REFCOUNT, inline="always")
def _scatter_span(a, b, centre0, e0, e1, offset, value, acc4, acc2, dl, dm):
    """Cells ``a .. b`` through taps ``e0 .. e1``, one tap at a time over the whole span."""
    has_mask = False
    for cell in range(a, b + 1):
        if acc2[2 * cell] != 0 or acc2[2 * cell + 1] != 0:
            has_mask = True
            break
    span = b - a + 1
    for e in range(e0, e1):
        k = value[e]
        d = uint64(4 * (centre0 + a + offset[e]))
        s = uint64(4 * a)
        for j in range(uint64(4 * span)):
            dl[d + j] += k * acc4[s + j]
        if has_mask:
            d = uint64(2 * (centre0 + a + offset[e]))
            s = uint64(2 * a)
            for j in range(uint64(2 * span)):
                dm[d + j] += k * acc2[s + j]


@njit(**NO_REFCOUNT, inline="always")
def _scatter_cell(cell, centre0, e0, e1, offset, value, acc4, acc2, dl, dm):
    """One cell through taps ``e0 .. e1``: its light as one 4-lane multiply-add per tap."""
    m0 = acc2[2 * cell]
    m1 = acc2[2 * cell + 1]
    base = centre0 + cell
    for e in range(e0, e1):
        _axpy4(dl, 4 * (base + offset[e]), value[e], acc4, 4 * cell)
    if m1 != 0:  # a fill cell: both masks
        for e in range(e0, e1):
            q = uint64(base + offset[e])
            k = value[e]
            dm[uint64(2) * q] += k * m0
            dm[uint64(2) * q + uint64(1)] += k * m1
    elif m0 != 0:  # most cells: occlusion only
        for e in range(e0, e1):
            dm[uint64(2) * uint64(base + offset[e])] += value[e] * m0


@njit(**NO_REFCOUNT)
def _render_band(
    y0, y1, lower, frac, linear, bits, buckets, bucket_start, extra_x, extra_start, first,
    layer, group_start, group_coarse, group_fill, half, row_start, offset, value,
    fill_ptr, fill_x, fill_v, colour,
    occluded, behind_fill, dl, dm, cdl, cdm, acc4, acc2, touched, is_touched, box,
    pad, stride, cpad, cstride,
):  # fmt: skip
    height, width = lower.shape
    last_bucket = first + bucket_start.shape[1] - 2
    rows = y1 - y0
    occluded[: rows * width] = 0.0
    behind_fill[: rows * width] = 1.0
    cheight = (height + 1) // 2
    # Coarse rows cy0 .. cy1 - 1 are what the band's rows interpolate from.
    cy0 = max(y0 // 2 - 1, 0)
    cy1 = min((y1 + 1) // 2 + 1, cheight)
    crows = cy1 - cy0
    for g in range(group_start.shape[0] - 1):
        coarse = group_coarse[g]
        row0, nrows, src_rows = (cy0, crows, cheight) if coarse else (y0, rows, height)
        box[0] = box[2] = _EMPTY
        box[1] = box[3] = -1
        for li in range(group_start[g], group_start[g + 1]):
            L = layer[li]
            h = half[li]
            for sy in range(max(0, row0 - h), min(src_rows, row0 + nrows + h)):
                n = 0
                if coarse:
                    for y in range(2 * sy, min(2 * sy + 2, height)):
                        n = _gather(y, L, first, last_bucket, 1, np.float32(0.25), frac, linear, bits, buckets, bucket_start, extra_x, extra_start, fill_ptr, fill_x, fill_v, acc4, acc2, touched, is_touched, n)  # fmt: skip
                else:
                    n = _gather(sy, L, first, last_bucket, 0, np.float32(1.0), frac, linear, bits, buckets, bucket_start, extra_x, extra_start, fill_ptr, fill_x, fill_v, acc4, acc2, touched, is_touched, n)  # fmt: skip
                if n == 0:
                    continue
                ka, kb = _rows(sy, h, row0, nrows)
                r0 = sy + ka - h - row0
                r1 = sy + kb - 1 - h - row0
                if coarse:
                    _emit((sy - row0) * cstride + cpad, row_start[li, ka], row_start[li, kb], offset, value, acc4, acc2, touched, is_touched, n, cdl, cdm, box, r0, r1)  # fmt: skip
                else:
                    _emit((sy - row0) * stride + pad, row_start[li, ka], row_start[li, kb], offset, value, acc4, acc2, touched, is_touched, n, dl, dm, box, r0, r1)  # fmt: skip
        # The box holds source columns; the kernel reaches h + 1 further on both sides.
        if box[0] <= box[1]:
            reach = 0
            for li in range(group_start[g], group_start[g + 1]):
                reach = max(reach, half[li] + 1)
            box[2] += (cpad if coarse else pad) - reach
            box[3] += (cpad if coarse else pad) + reach
        if coarse:
            _composite_coarse(y0, rows, cy0, height, width, cdl, cdm, box, cpad, cstride, group_fill[g], colour, occluded, behind_fill)  # fmt: skip
        else:
            _composite_fine(width, dl, dm, box, pad, stride, group_fill[g], colour, occluded, behind_fill)


@njit(**NO_REFCOUNT)
def _composite_fine(width, dl, dm, box, pad, stride, has_fill, colour, occluded, behind_fill):
    """Running sums along each touched band row rebuild the group's blurred light, occlusion and
    fill; the light is added where nearer groups let it through, then the group occludes what lies
    behind. The difference buffers are left zeroed. ``colour`` (4 per pixel), ``occluded`` and
    ``behind_fill`` are the flat planes of the band's rows."""
    if box[0] > box[1]:
        return
    for row in range(box[0], box[1] + 1):
        r0 = r1 = r2 = r3 = m0 = m1 = np.float32(0.0)
        base = row * stride
        pixel0 = row * width - pad  # band pixel index of buffer column c: pixel0 + c
        for c in range(box[2], box[3] + 1):
            q = base + c
            r0 += dl[4 * q]
            r1 += dl[4 * q + 1]
            r2 += dl[4 * q + 2]
            r3 += dl[4 * q + 3]
            m0 += dm[2 * q]
            dl[4 * q] = dl[4 * q + 1] = dl[4 * q + 2] = dl[4 * q + 3] = 0.0
            dm[2 * q] = 0.0
            if has_fill:
                m1 += dm[2 * q + 1]
                dm[2 * q + 1] = 0.0
            x = c - pad
            if 0 <= x < width:
                p = pixel0 + c
                _composite_pixel(colour, occluded, behind_fill, 4 * p, p, r0, r1, r2, r3, m0, m1, has_fill)


@njit(**NO_REFCOUNT, inline="always")
def _composite_pixel(colour, occluded, behind_fill, ci, p, r0, r1, r2, r3, m0, m1, has_fill):
    """One pixel of one group: ``ci`` its flat colour index, ``p`` its flat band index. Skipped
    where the group brings nothing (round-off of the running sums) and where nearer groups
    already hide the pixel completely (nothing behind can change it; these come in runs, so the
    branch is cheap)."""
    if occluded[p] >= np.float32(1.0) or not (r3 > _NOTHING or m0 > _NOTHING or m1 > _NOTHING):
        return
    seen = min(max(np.float32(1.0) - occluded[p], np.float32(0.0)), np.float32(1.0)) * behind_fill[p]
    colour[ci] += max(r0, np.float32(0.0)) * seen
    colour[ci + 1] += max(r1, np.float32(0.0)) * seen
    colour[ci + 2] += max(r2, np.float32(0.0)) * seen
    colour[ci + 3] += max(r3, np.float32(0.0)) * seen
    occluded[p] += max(m0, np.float32(0.0))
    if has_fill:
        behind_fill[p] *= np.float32(1.0) - max(m1, np.float32(0.0))


@njit(**NO_REFCOUNT)
def _composite_coarse(y0, rows, cy0, height, width, cdl, cdm, box, cpad, cstride, has_fill, colour, occluded, behind_fill):
    """Read the coarse group back at the band's pixels as OpenCV's 2x bilinear upsampling
    (INTER_LINEAR: pixel centres aligned, edges clamped) of its running sums, and composite.

    Interpolation is linear, so it is applied to the row differences: two coarse rows are blended
    vertically, and along the row the running sum ``v[k]`` (coarse cell k) gives the pixels
    between cells k and k + 1 as ``v[k] + 0.25 d[k + 1]`` and ``v[k] + 0.75 d[k + 1]``. The
    difference buffers are cleared afterwards."""
    if box[0] > box[1]:
        return
    cheight = (height + 1) // 2
    cwidth = (width + 1) // 2
    cb = min(box[3], cpad + cwidth - 1)
    q1 = np.float32(0.25)
    for row in range(rows):
        y = y0 + row
        ky, wy0, wy1 = coarse_taps(y, cheight)
        r0 = ky - cy0
        r1 = min(ky + 1, cheight - 1) - cy0
        if max(r0, r1) < box[0] or min(r0, r1) > box[1]:
            continue
        b0 = r0 * cstride
        b1 = r1 * cstride
        v0 = v1 = v2 = v3 = v4 = v5 = np.float32(0.0)
        band0 = row * width
        # Cells k0 .. k1 hold differences (those left of the image, k < 0, only feed the running
        # sum); pixels up to 2 k1 + 1 can be non-zero.
        k0 = box[2] - cpad
        k1 = cb - cpad
        for k in range(k0, k1 + 1):
            c = k + cpad
            d0, d1, d2, d3, d4, d5 = _blend(cdl, cdm, b0 + c, b1 + c, wy0, wy1)
            if k > 0:  # pixel 2k - 1: v[k - 1] + d[k] / 4
                x = 2 * k - 1
                _composite_pixel(colour, occluded, behind_fill, 4 * (band0 + x), band0 + x,
                                 v0 + q1 * d0, v1 + q1 * d1, v2 + q1 * d2, v3 + q1 * d3, v4 + q1 * d4, v5 + q1 * d5, has_fill)  # fmt: skip
            v0 += d0
            v1 += d1
            v2 += d2
            v3 += d3
            v4 += d4
            v5 += d5
            if k < 0:
                continue
            # pixel 2k: v[k] - d[k] / 4 (pixel 0 is clamped to cell 0)
            f = q1 if k > 0 else np.float32(0.0)
            x = 2 * k
            _composite_pixel(colour, occluded, behind_fill, 4 * (band0 + x), band0 + x,
                             v0 - f * d0, v1 - f * d1, v2 - f * d2, v3 - f * d3, v4 - f * d4, v5 - f * d5, has_fill)  # fmt: skip
        # Pixel 2 k1 + 1: v[k1] + d[k1 + 1] / 4 (or v[k1] clamped at the last cell).
        x = 2 * k1 + 1
        if x < width:
            f = q1 if k1 + 1 < cwidth and cb + 1 <= box[3] else np.float32(0.0)
            c = cb + 1
            d0 = d1 = d2 = d3 = d4 = d5 = np.float32(0.0)
            if f != 0:
                d0, d1, d2, d3, d4, d5 = _blend(cdl, cdm, b0 + c, b1 + c, wy0, wy1)
            _composite_pixel(colour, occluded, behind_fill, 4 * (band0 + x), band0 + x,
                             v0 + f * d0, v1 + f * d1, v2 + f * d2, v3 + f * d3, v4 + f * d4, v5 + f * d5, has_fill)  # fmt: skip
    for row in range(box[0], box[1] + 1):
        base = row * cstride
        cdl[4 * (base + box[2]) : 4 * (base + box[3] + 1)] = 0.0
        cdm[2 * (base + box[2]) : 2 * (base + box[3] + 1)] = 0.0


@njit(**NO_REFCOUNT, inline="always")
def _blend(cdl, cdm, i, j, wy0, wy1):
    """The row differences of buffer cells ``i`` and ``j`` (two coarse rows) blended vertically."""
    return (
        wy0 * cdl[4 * i] + wy1 * cdl[4 * j],
        wy0 * cdl[4 * i + 1] + wy1 * cdl[4 * j + 1],
        wy0 * cdl[4 * i + 2] + wy1 * cdl[4 * j + 2],
        wy0 * cdl[4 * i + 3] + wy1 * cdl[4 * j + 3],
        wy0 * cdm[2 * i] + wy1 * cdm[2 * j],
        wy0 * cdm[2 * i + 1] + wy1 * cdm[2 * j + 1],
    )
