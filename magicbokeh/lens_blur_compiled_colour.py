"""Compiled (Numba) twins of the renderer's per-pixel colour passes: the sRGB decode before
blurring, and the divide-by-coverage and sRGB encode after it.

Both curves are read from tables with linear interpolation: a power function per channel costs more
than the rest of the pass. The encode table is indexed by ``sqrt(linear)``, where the curve is
smooth (its steep start near black becomes gentle). Both stay within 1e-6 of
:mod:`magicbokeh.colour` (tested), far below one 16-bit level.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .colour import linear_to_srgb, srgb_to_linear
from .lens_blur_compiled_layers import NO_REFCOUNT

#: Intervals of each table.
_STEPS = 4096
_GRID = np.linspace(0.0, 1.0, _STEPS + 1)
#: sRGB value s -> linear, at s = i / _STEPS.
_DECODE = srgb_to_linear(_GRID).astype(np.float32)
#: sqrt(linear) t -> sRGB, at t = i / _STEPS.
_ENCODE = linear_to_srgb(_GRID * _GRID).astype(np.float32)


@njit(**NO_REFCOUNT, inline="always")
def _lookup(table, u):
    """``table`` read at ``u`` in [0, 1], interpolated linearly."""
    x = min(max(u, np.float32(0.0)), np.float32(1.0)) * np.float32(_STEPS)
    i = min(np.int64(x), _STEPS - 1)
    return table[i] + (x - np.float32(i)) * (table[i + 1] - table[i])


@njit(**NO_REFCOUNT)
def decode_rows(rgb: np.ndarray, out: np.ndarray, y0: int, y1: int) -> None:
    """Linear colour of the sRGB ``rgb`` (H, W, 3) float32, rows ``y0 .. y1`` into ``out``."""
    for y in range(y0, y1):
        for x in range(rgb.shape[1]):
            for c in range(3):
                out[y, x, c] = _lookup(_DECODE, rgb[y, x, c])


@njit(**NO_REFCOUNT)
def finish_rows(colour: np.ndarray, linear: np.ndarray, out: np.ndarray) -> None:
    """Twin of :func:`magicbokeh.lens_blur._finish`: ``colour`` (h, W, 4) premultiplied linear
    colour and coverage, ``linear`` (h, W, 3) the input's linear colour (kept where nothing
    landed), ``out`` (h, W, 3) receives sRGB in [0, 1]."""
    for y in range(colour.shape[0]):
        for x in range(colour.shape[1]):
            coverage = colour[y, x, 3]
            if coverage > np.float32(1e-6):
                scale = np.float32(1.0) / coverage
                for c in range(3):
                    out[y, x, c] = _lookup(_ENCODE, np.sqrt(max(colour[y, x, c] * scale, np.float32(0.0))))
            else:
                for c in range(3):
                    out[y, x, c] = _lookup(_ENCODE, np.sqrt(max(linear[y, x, c], np.float32(0.0))))
