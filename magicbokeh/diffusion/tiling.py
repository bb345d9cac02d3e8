"""Official tiling and linear-ramp blending in pixel space (spec §1.5).

Tiles are ``tile`` × ``tile`` (512 for SD2.1) with stride ``tile / 2``. Along each axis the starts
are ``0, s, 2s, …`` while the tile fits, plus a last tile flush with the far edge when the size is
not a multiple of the stride. Each tile's weight is the outer product of two 1-D profiles: ones,
with a ``1 → 0`` ramp over the last ``tile / 2`` entries unless the tile is the last one, and a
``0 → 1`` ramp over the first ``tile / 2`` entries unless it starts at 0. Every pixel's weight
sum is ≥ 1. Images smaller than a tile are reflect-padded to one tile and cropped back.
"""

from __future__ import annotations

import numpy as np

#: Official tile size in pixels (SD2.1-base: latent 64 × VAE factor 8).
TILE_SIZE = 512


def tile_starts(size: int, tile: int = TILE_SIZE) -> list[int]:
    """Tile start offsets along one axis of length ``size`` (≥ ``tile``), in pixels."""
    if size < tile:
        raise ValueError(f"an axis of {size} px is smaller than the {tile} px tile; pad it first")
    stride = tile // 2
    starts = list(range(0, size - tile + 1, stride))
    if size % stride != 0:
        starts.append(size - tile)
    return starts


def tile_positions(height: int, width: int, tile: int = TILE_SIZE) -> list[tuple[int, int]]:
    """``(top, left)`` of every tile, row-major: the official tile set (§1.5), whose code appends
    the bottom row, right column and corner after the regular grid (only the summation order of
    the blend differs)."""
    return [(i, j) for i in tile_starts(height, tile) for j in tile_starts(width, tile)]


def tile_count(height: int, width: int, tile: int = TILE_SIZE) -> int:
    """Number of tiles for an image (after padding small sides up to one tile)."""
    return len(tile_starts(max(height, tile), tile)) * len(tile_starts(max(width, tile), tile))


def ramp_profile(start: int, size: int, tile: int = TILE_SIZE) -> np.ndarray:
    """1-D blend profile (``tile``,) float32 of a tile starting at ``start`` on an axis of ``size``."""
    half = tile // 2
    profile = np.ones(tile, dtype=np.float32)
    if start < size - tile:  # not the last tile: fade out
        profile[-half:] = np.linspace(1.0, 0.0, half, dtype=np.float32)
    if start > 0:  # not the first tile: fade in
        profile[:half] = np.linspace(0.0, 1.0, half, dtype=np.float32)
    return profile


def tile_weight(top: int, left: int, height: int, width: int, tile: int = TILE_SIZE) -> np.ndarray:
    """``(tile, tile)`` float32 blend weight of the tile at ``(top, left)``."""
    return np.outer(ramp_profile(top, height, tile), ramp_profile(left, width, tile))


def weight_sum(height: int, width: int, tile: int = TILE_SIZE) -> np.ndarray:
    """``(H, W)`` sum of all tile weights (useful to check coverage)."""
    total = np.zeros((height, width), dtype=np.float32)
    for top, left in tile_positions(height, width, tile):
        total[top : top + tile, left : left + tile] += tile_weight(top, left, height, width, tile)
    return total


def pad_to_tile(array: np.ndarray, tile: int = TILE_SIZE) -> np.ndarray:
    """Reflect-pad the bottom/right of an ``(H, W[, C])`` array so both sides are ≥ ``tile``.

    Returns the array unchanged when it is already large enough; crop results back with
    ``[:H, :W]``. numpy's reflect mode repeats the reflection when the pad exceeds the size.
    """
    h, w = array.shape[:2]
    pad_h, pad_w = max(tile - h, 0), max(tile - w, 0)
    if pad_h == 0 and pad_w == 0:
        return array
    pad = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    mode = "reflect" if min(h, w) > 1 else "edge"  # reflect needs at least two samples
    return np.pad(array, pad, mode=mode)


__all__ = [
    "TILE_SIZE",
    "pad_to_tile",
    "ramp_profile",
    "tile_count",
    "tile_positions",
    "tile_starts",
    "tile_weight",
    "weight_sum",
]
