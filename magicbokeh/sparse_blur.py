"""Sparse aperture convolution (Numba): cost grows with a layer's non-zero pixels, not its area.

Most depth layers of a scene are sparse: a few thin bands of pixels spread over a frame-sized box.
A frame-sized DFT per layer (what ``cv2.filter2D`` does for kernels above 11 x 11) then costs the
same for a layer of ten pixels as for a full one. Here each kernel row is split into one constant
run ``[a, b]`` of value ``c`` (an anti-aliased disc or polygon is flat inside) and its few remaining
non-zero pixels (the anti-aliased rim). A non-zero input pixel ``v`` adds ``v * c`` at ``x + a``
and ``-v * c`` at ``x + b + 1`` of a row-difference buffer, and its rim taps straight into a second
row buffer; a prefix sum of the first plus the second gives the convolution row. Cost: ~20 ns per
non-zero pixel and kernel row (2 threads), so it beats filter2D's DFT only on sparse layers (the
renderer chooses per layer by an estimated cost). The result equals ``cv2.filter2D`` with the
flipped kernel and ``BORDER_CONSTANT`` (zero outside) up to float summation order: the buffers are
float64, so zero regions stay zero to ~1e-15.

Rows are computed independently (each output row gathers from the input rows its kernel reaches),
in parallel bands: the result does not depend on the number of threads.

Numba is imported here only, and this module is imported lazily by the renderer, so
``import magicbokeh`` stays light.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np

__all__ = ["KernelRuns", "sparse_convolve", "nonzero_pixels", "estimate_nonzero_pixels", "kernel_runs"]


class KernelRuns(NamedTuple):
    """A kernel split row by row into one constant run and its other non-zero taps (the rim)."""

    runs: np.ndarray  # (n, 2) int64: first and last column of each row's run (last < first: none)
    run_values: np.ndarray  # (n,) float64
    rim_cols: np.ndarray  # (e,) int64: columns of the other non-zero taps, row after row
    rim_values: np.ndarray  # (e,) float64
    rim_starts: np.ndarray  # (n + 1,) int64: row u's rim taps are [rim_starts[u], rim_starts[u + 1])


@lru_cache(maxsize=256)
def _runs_cached(key: bytes, shape: tuple[int, int]) -> KernelRuns:
    kernel = np.frombuffer(key, np.float32).reshape(shape)
    n_rows, n_cols = shape
    runs = np.zeros((n_rows, 2), np.int64)
    values = np.zeros(n_rows, np.float64)
    rim_cols: list[int] = []
    rim_values: list[float] = []
    starts = [0]
    for u in range(n_rows):
        row = kernel[u]
        best_a, best_b, a = 0, -1, 0
        while a < n_cols:  # the longest run of one non-zero value (a disc's flat inside)
            b = a
            while b + 1 < n_cols and row[b + 1] == row[a]:
                b += 1
            if row[a] != 0 and b - a > best_b - best_a:
                best_a, best_b = a, b
            a = b + 1
        runs[u] = (best_a, best_b)
        values[u] = float(row[best_a]) if best_b >= best_a else 0.0
        for v in range(n_cols):
            if row[v] != 0 and not best_a <= v <= best_b:
                rim_cols.append(v)
                rim_values.append(float(row[v]))
        starts.append(len(rim_cols))
    return KernelRuns(
        runs, values, np.array(rim_cols, np.int64), np.array(rim_values, np.float64), np.array(starts, np.int64)
    )


def kernel_runs(kernel: np.ndarray) -> KernelRuns:
    """Decompose an (n, m) float32 kernel row by row into its longest constant run and the other
    non-zero taps (exact: run plus rim rebuild the kernel). Cached per kernel."""
    kernel = np.ascontiguousarray(kernel, dtype=np.float32)
    return _runs_cached(kernel.tobytes(), kernel.shape)


@numba.njit(cache=True, nogil=True, parallel=True)
def _nonzero_rows(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the pixels with a non-zero channel (channels are >= 0, so a positive sum): row
    starts (h + 1) and their columns."""
    h, w, n_ch = planes.shape
    counts = np.zeros(h + 1, np.int64)
    for y in numba.prange(h):
        count = 0
        for x in range(w):
            total = 0.0
            for c in range(n_ch):
                total += planes[y, x, c]
            if total != 0.0:
                count += 1
        counts[y + 1] = count
    starts = np.cumsum(counts)
    cols = np.empty(starts[h], np.int32)
    for y in numba.prange(h):
        i = starts[y]
        for x in range(w):
            total = 0.0
            for c in range(n_ch):
                total += planes[y, x, c]
            if total != 0.0:
                cols[i] = x
                i += 1
    return starts, cols


@numba.njit(cache=True, nogil=True, parallel=True)
def _scatter_rows(
    planes: np.ndarray,
    starts: np.ndarray,
    cols: np.ndarray,
    runs: np.ndarray,
    run_values: np.ndarray,
    rim_cols: np.ndarray,
    rim_values: np.ndarray,
    rim_starts: np.ndarray,
    anchor_y: int,
    anchor_x: int,
    band: int,
) -> np.ndarray:
    h, w, n_ch = planes.shape
    n_rows = runs.shape[0]
    out = np.zeros((h, w, n_ch), np.float32)  # calloc: rows nothing reaches stay unmapped zeros
    n_bands = (h + band - 1) // band
    for bi in numba.prange(n_bands):
        diff = np.zeros((w + 1, n_ch), np.float64)  # run starts (+) and ends (-)
        direct = np.zeros((w, n_ch), np.float64)  # rim taps
        acc = np.zeros(n_ch, np.float64)
        for oy in range(bi * band, min((bi + 1) * band, h)):
            span_lo, span_hi = w, 0  # columns this row receives anything in
            for u in range(n_rows):
                py = oy - u + anchor_y  # out[py + u - anchor_y] gathers input row py
                if py < 0 or py >= h or starts[py] == starts[py + 1]:
                    continue
                a = runs[u, 0] - anchor_x
                b = runs[u, 1] - anchor_x
                c = run_values[u]
                r0, r1 = rim_starts[u], rim_starts[u + 1]
                for i in range(starts[py], starts[py + 1]):
                    x = cols[i]
                    if b >= a:
                        lo = max(x + a, 0)  # a run cut by the left border starts at column 0
                        hi = min(x + b + 1, w)
                        if lo < hi:
                            span_lo = min(span_lo, lo)
                            span_hi = max(span_hi, hi)
                            for ch in range(n_ch):
                                val = planes[py, x, ch] * c
                                diff[lo, ch] += val
                                diff[hi, ch] -= val
                    for k in range(r0, r1):
                        ox = x + rim_cols[k] - anchor_x
                        if 0 <= ox < w:
                            span_lo = min(span_lo, ox)
                            span_hi = max(span_hi, ox + 1)
                            kv = rim_values[k]
                            for ch in range(n_ch):
                                direct[ox, ch] += planes[py, x, ch] * kv
            if span_lo >= span_hi:
                continue
            acc[:] = 0.0
            for x in range(span_lo, span_hi):
                for ch in range(n_ch):
                    acc[ch] += diff[x, ch]
                    val = acc[ch] + direct[x, ch]
                    out[oy, x, ch] = val if val > 0.0 else 0.0
                    diff[x, ch] = 0.0
                    direct[x, ch] = 0.0
            for ch in range(n_ch):
                diff[span_hi, ch] = 0.0
    return out


@numba.njit(cache=True, nogil=True)
def _nonzero_in_rows(planes: np.ndarray, step: int) -> int:
    h, w, n_ch = planes.shape
    count = 0
    for y in range(0, h, step):
        for x in range(w):
            total = 0.0
            for c in range(n_ch):
                total += planes[y, x, c]
            if total != 0.0:
                count += 1
    return count


def estimate_nonzero_pixels(planes: np.ndarray, step: int = 8) -> int:
    """Number of pixels of (h, w[, c]) float32 non-negative ``planes`` with a non-zero channel,
    estimated from every ``step``-th row (a fraction of the cost of counting them all)."""
    arr = _as_3d(planes)
    rows = (arr.shape[0] + step - 1) // step
    return _nonzero_in_rows(arr, step) * arr.shape[0] // max(rows, 1)


def nonzero_pixels(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row starts (h + 1) and columns (CSR) of the pixels of (h, w[, c]) float32 non-negative
    ``planes`` with a non-zero channel; ``starts[-1]`` is their number."""
    return _nonzero_rows(_as_3d(planes))


def sparse_convolve(
    planes: np.ndarray, kernel: np.ndarray, nonzero: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Convolve each channel of (h, w[, c]) float32 non-negative ``planes`` with the (n, m) float32
    ``kernel`` (odd sizes, centred), zero outside: equal to ``cv2.filter2D(planes, -1,
    kernel[::-1, ::-1], borderType=cv2.BORDER_CONSTANT)`` up to float rounding. Same shape out,
    clipped at 0. ``nonzero``: the CSR from :func:`nonzero_pixels`, if already computed."""
    arr = _as_3d(planes)
    starts, cols = nonzero if nonzero is not None else _nonzero_rows(arr)
    split = kernel_runs(kernel)
    out = _scatter_rows(arr, starts, cols, *split, kernel.shape[0] // 2, kernel.shape[1] // 2, _BAND_ROWS)
    return out.reshape(planes.shape)


#: Output rows per parallel task: enough to amortise the task, small enough to balance two cores.
_BAND_ROWS = 16


def _as_3d(planes: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(planes, dtype=np.float32)
    return arr[..., None] if arr.ndim == 2 else arr
