"""The depth layers of the classical renderer, as data both compositors read.

A pixel of signed blur radius ``r`` (px, grows towards the camera) belongs to two integer layers:
``floor(r)`` with share ``1 - frac`` and ``floor(r) + 1`` with share ``frac``. What each layer
holds (see :mod:`magicbokeh.lens_blur` for why):

* light: premultiplied linear colour and coverage, ``share * (r, g, b, 1)``;
* occlusion: 1 at pixels whose radius lies in ``[L, L + 1)``, widened by one pixel into 8-neighbours
  of the same smooth surface (radius within :data:`OCCLUSION_JUMP_PX` of ``[L, L + 1)``);
* fill: where the layer continues hidden behind nearer pixels (:mod:`magicbokeh.lens_blur_fill`),
  its extended colour and the fill's occlusion.

This module holds the rules in one place; :mod:`magicbokeh.lens_blur_compiled` (fast) and
:mod:`magicbokeh.lens_blur_reference` (dense, plain NumPy/OpenCV) blur and composite them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .lens_blur_fill import OCCLUSION_JUMP_PX, cells, edge_distance, far_side_of_edges, fill_colours, hidden_band, sample_cells

#: A pixel occludes the layers at least this many layers (pixels of blur radius) behind the farther
#: of its own two layers. 2 (never occlude one's own neighbouring layer) measured 1-3 dB worse
#: near occlusion edges against the ray tracer than 1, with the same seam residual. Both
#: compositors apply a group's occlusion to every group behind it, which is this value 1; the
#: constant also sets which pixels hide a layer in the fill's band rule.
OCCLUDE_AFTER_LAYERS = 1

# The occlusion rule below is exact for an integer jump: radius r lies within J px of [L, L + 1)
# exactly when floor(r) is within J of L.
assert float(OCCLUSION_JUMP_PX).is_integer()
JUMP_LAYERS = int(OCCLUSION_JUMP_PX)


@dataclass
class FillItems:
    """One layer's hidden-surface fill as sparse pixels in row-major order: ``ys``, ``xs`` and
    ``values`` (n, 6) float32 = premultiplied colour (3), coverage, occlusion (0), fill occlusion."""

    ys: np.ndarray
    xs: np.ndarray
    values: np.ndarray


@dataclass
class Layers:
    """Everything the compositors need, for a (H, W) photo.

    ``lower``: (H, W) int32 ``floor(radius)``; ``frac``: (H, W) float32 ``radius - lower``;
    ``linear``: (H, W, 3) float32 linear colour; ``occlusion_bits``: (H, W) uint8, bit
    ``L - lower + JUMP`` set when the pixel occludes in layer ``L`` (see :func:`occlusion_bits`);
    ``fills``: per layer, its fill. Layers run from ``first`` (farthest) to ``last`` (nearest).
    """

    lower: np.ndarray
    frac: np.ndarray
    linear: np.ndarray
    occlusion_bits: np.ndarray
    fills: dict[int, FillItems] = field(default_factory=dict)

    @property
    def first(self) -> int:
        return int(self.lower.min())

    @property
    def last(self) -> int:
        return int(self.lower.max()) + 1


#: Layers blurred on the coarse grid are composited in groups spanning at most this fraction of
#: their blur radius (so at most 1 layer from 4 px on, 2 from 8, 5 from 20 ...): within a group the
#: layers add their light without occluding each other, and the cost of compositing grows with the
#: number of groups, not of layers. Layers that lie behind an occlusion edge (those with a
#: hidden-surface fill) are never grouped, so this merges only layers that nothing in the photo
#: shows one in front of the other: parts of smooth surfaces, and the near sides of edges.
GROUP_RADIUS_FRACTION = 0.25


def composite_groups(first: int, last: int, half_res_radius_px: float, alone: Collection[int] = ()) -> list[list[int]]:
    """Layers ``first .. last`` in compositing order (near to far), grouped: each layer blurred at
    full resolution alone; coarse-grid layers (``|L| >= half_res_radius_px``) on one side of the
    focal plane together while their radii stay within :data:`GROUP_RADIUS_FRACTION` of the
    smallest. Layers in ``alone`` (those with a hidden-surface fill) are never grouped: the two
    layers a surface is split between each carry a fill at the same place, and only compositing
    one behind the other keeps them from counting twice."""
    groups: list[list[int]] = []
    for layer in range(last, first - 1, -1):
        if groups and abs(layer) >= half_res_radius_px and layer not in alone:
            group = groups[-1]
            head = group[0]
            smallest = min(abs(head), abs(layer))
            same_side = (head > 0) == (layer > 0) and abs(head) >= half_res_radius_px and head not in alone
            if same_side and abs(abs(layer) - abs(head)) + 1 <= max(1.0, smallest * GROUP_RADIUS_FRACTION):
                group.append(layer)
                continue
        groups.append([layer])
    return groups


def split_radius(radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) signed radius -> ``floor`` as int32 and the float32 share of the layer above."""
    lower = np.floor(radius)
    frac = (radius - lower).astype(np.float32)
    return lower.astype(np.int32), frac


def occlusion_bits(lower: np.ndarray) -> np.ndarray:
    """(H, W) uint8: bit ``L - lower + JUMP`` (0 .. 2 JUMP) is set when the pixel occludes in layer
    ``L``, i.e. some 8-neighbour (or the pixel itself) has ``floor(radius) == L`` and ``L`` is
    within ``JUMP`` of the pixel's own ``floor(radius)``. Plain NumPy; see
    :func:`magicbokeh.lens_blur_compiled_layers.occlusion_bits_rows` for the compiled twin."""
    h, w = lower.shape
    far = np.iinfo(np.int32).min // 2  # outside the image: never within reach
    padded = np.full((h + 2, w + 2), far, np.int64)
    padded[1:-1, 1:-1] = lower
    bits = np.zeros((h, w), np.uint8)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            d = padded[dy : dy + h, dx : dx + w] - lower
            near = np.abs(d) <= JUMP_LAYERS
            bits |= np.where(near, np.left_shift(1, np.clip(d + JUMP_LAYERS, 0, 2 * JUMP_LAYERS)), 0).astype(np.uint8)
    return bits


def layer_light(layers: Layers, layer: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(h, w, 4) float32 premultiplied light of one layer (members only, no fill), in ``box``
    (y0, y1, x0, x1; default the whole photo)."""
    y0, y1, x0, x1 = box or (0, layers.lower.shape[0], 0, layers.lower.shape[1])
    lower, frac = layers.lower[y0:y1, x0:x1], layers.frac[y0:y1, x0:x1]
    share = np.where(lower == layer, np.float32(1.0) - frac, np.float32(0.0))
    share += np.where(lower == layer - 1, frac, np.float32(0.0))
    out = np.empty(lower.shape + (4,), np.float32)
    out[..., :3] = layers.linear[y0:y1, x0:x1] * share[..., None]
    out[..., 3] = share
    return out


def layer_light_cells(layers: Layers, layer: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w, 4) float32 :func:`layer_light` summed over the 2 x 2 cells of ``box`` (y0, y1, x0,
    x1; pixels past its bottom and right edges count 0)."""
    light = layer_light(layers, layer, box)
    h, w = cells(box)
    padded = np.zeros((2 * h, 2 * w, 4), np.float32)
    padded[: light.shape[0], : light.shape[1]] = light
    return padded.reshape(h, 2, w, 2, 4).sum(axis=(1, 3), dtype=np.float32)


def light_cells(layers: Layers, order: list[int], boxes: list[tuple[int, int, int, int]], threads: int = 1) -> list[np.ndarray]:
    """:func:`layer_light_cells` of each layer of ``order`` in its box."""
    return [layer_light_cells(layers, layer, box) for layer, box in zip(order, boxes)]


def layer_occlusion(layers: Layers, layer: int) -> np.ndarray:
    """(H, W) float32 0/1 occlusion of one layer's own pixels (widened, see the module docstring)."""
    bit = layer - layers.lower + JUMP_LAYERS
    inside = (bit >= 0) & (bit <= 2 * JUMP_LAYERS)
    return (inside & ((layers.occlusion_bits >> np.clip(bit, 0, 2 * JUMP_LAYERS)) & 1).astype(bool)).astype(np.float32)


def add_fills(layers: Layers, radius: np.ndarray, *, rules: LayerRules | None = None, threads: int = 1) -> None:
    """Give every layer that meets a depth discontinuity its hidden-surface fill (in place), with
    ``rules`` (default :data:`NUMPY_RULES`); the edge distances and colours of up to ``threads``
    layers are computed at once (same result)."""
    rules = rules or NUMPY_RULES
    far_edge = far_side_of_edges(radius)
    if far_edge is None:
        return
    height, width = radius.shape
    edge_layers = _edge_layers(layers, far_edge)
    order = sorted(edge_layers)
    boxes = []
    for layer in order:
        # The hidden band reaches |r(p)| + r + 2 px from the edge. The box starts on even
        # coordinates, so all layers' 2 x 2 cells lie on one grid.
        reach = abs(layer) + max(abs(layer + OCCLUDE_AFTER_LAYERS), abs(layers.last)) + 2
        eys, exs = np.divmod(edge_layers[layer], width)
        y0, x0 = max(int(eys.min()) - reach, 0), max(int(exs.min()) - reach, 0)
        y1, x1 = min(int(eys.max()) + reach + 1, height), min(int(exs.max()) + reach + 1, width)
        boxes.append((y0 - y0 % 2, y1, x0 - x0 % 2, x1))
    # The distances of all layers in one buffer, which the compiled bands read without copying.
    shapes = [cells(box) for box in boxes]
    ends = np.cumsum([h * w for h, w in shapes])
    flat = np.empty(int(ends[-1]), np.float32)
    outs = [flat[end - h * w : end].reshape(h, w) for end, (h, w) in zip(ends, shapes)]
    sums = rules.light_cells(layers, order, boxes, threads)  # first: it runs on all threads
    pool = worker_pool(threads)
    if pool is None:
        dists = [edge_distance(edge_layers[L], width, box, out) for L, box, out in zip(order, boxes, outs)]
        colours = [rules.colours(layer_sums) for layer_sums in sums]
    else:
        dists = [pool.submit(edge_distance, edge_layers[L], width, box, out) for L, box, out in zip(order, boxes, outs)]
        colours = [pool.submit(rules.colours, layer_sums) for layer_sums in sums]
        dists = [job.result() for job in dists]
        colours = [job.result() for job in colours]
    for layer, (ys, xs, values) in zip(order, rules.bands(radius, order, boxes, dists, colours, threads)):
        if ys.size:
            layers.fills[layer] = FillItems(ys, xs, values)


def fill_bands(
    radius: np.ndarray, order: list[int], boxes: list[tuple[int, int, int, int]], dists: list[np.ndarray],
    colours: list[np.ndarray], threads: int = 1,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:  # fmt: skip
    """Per layer of ``order`` (far to near), the pixels of its hidden band (int32 rows, columns in
    the photo, row-major; :func:`~magicbokeh.lens_blur_fill.hidden_band`) and their
    :class:`FillItems` values: the fill colour there (:func:`~magicbokeh.lens_blur_fill.sample_cells`,
    opaque: coverage 1), no member occlusion, and the fill's own occlusion (its coverage).
    ``boxes``, ``dists`` and ``colours`` are the layers' boxes, cell distances to their edges and
    filled cells.

    Far to near, because a hidden point belongs to the nearest edge among the farther layers."""
    edge_dist = np.full(radius.shape, np.inf, np.float32)
    out = []
    for layer, box, dist, filled in zip(order, boxes, dists, colours):
        ys, xs = hidden_band(radius, layer, dist, box, edge_dist, layer + OCCLUDE_AFTER_LAYERS)
        values = np.zeros((ys.size, 6), np.float32)
        values[:, :4] = sample_cells(filled, ys, xs)
        values[:, 5] = values[:, 3]
        out.append(((ys + box[0]).astype(np.int32), (xs + box[2]).astype(np.int32), values))
    return out


def _edge_layers(layers: Layers, far_edge: np.ndarray) -> dict[int, np.ndarray]:
    """Flat indices of the occlusion-edge pixels of each layer (a pixel is in both of its layers);
    ``far_edge`` is the flat mask of :func:`~magicbokeh.lens_blur_fill.far_side_of_edges`."""
    flat = np.flatnonzero(far_edge)
    lower = layers.lower.ravel()[flat]
    above = layers.frac.ravel()[flat] > 0
    keys = np.concatenate([lower, lower[above] + 1])
    pixels = np.concatenate([flat, flat[above]])
    order = np.argsort(keys, kind="stable")
    layer_ids, starts = np.unique(keys[order], return_index=True)
    groups = np.split(pixels[order], starts[1:])
    return {int(layer): group for layer, group in zip(layer_ids, groups)}


def build_layers(
    radius: np.ndarray, linear: np.ndarray, *, fill_hidden: bool, rules: LayerRules | None = None, threads: int = 1
) -> Layers:
    """The layers of a photo: ``radius`` (H, W) float32 signed CoC radius (px), ``linear``
    (H, W, 3) float32 linear colour, computed with ``rules`` (default :data:`NUMPY_RULES`) on
    ``threads`` threads."""
    rules = rules or NUMPY_RULES
    lower, frac = rules.split(radius, threads)
    layers = Layers(lower, frac, np.ascontiguousarray(linear, dtype=np.float32), rules.bits(lower, threads))
    if fill_hidden:
        add_fills(layers, radius, rules=rules, threads=threads)
    return layers


@dataclass(frozen=True)
class LayerRules:
    """The layer rules as functions, so that compiled twins can stand in for the NumPy ones:
    ``split(radius, threads)`` -> (lower, frac); ``bits(lower, threads)`` -> occlusion bits;
    ``light_cells(layers, order, boxes, threads)`` -> :func:`light_cells`; ``colours(sums)`` ->
    :func:`~magicbokeh.lens_blur_fill.fill_colours`; ``bands(radius, order, boxes, dists, colours,
    threads)`` -> :func:`fill_bands`."""

    split: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
    bits: Callable[[np.ndarray, int], np.ndarray]
    light_cells: Callable[..., list[np.ndarray]]
    colours: Callable[[np.ndarray], np.ndarray]
    bands: Callable[..., list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


#: The plain NumPy rules (the reference; :data:`magicbokeh.lens_blur_compiled_layers.COMPILED_RULES`
#: must give the same layers).
NUMPY_RULES = LayerRules(
    split=lambda radius, threads: split_radius(radius),
    bits=lambda lower, threads: occlusion_bits(lower),
    light_cells=light_cells,
    colours=fill_colours,
    bands=fill_bands,
)


def for_row_blocks(fn, height: int, threads: int, rows: int = 128) -> None:
    """Call ``fn(y0, y1)`` on blocks of rows covering ``0 .. height``, on ``threads`` threads
    (``fn`` must release the GIL to gain: OpenCV, Numba ``nogil``, large NumPy ufuncs)."""
    blocks = [(y, min(y + rows, height)) for y in range(0, height, rows)]
    pool = worker_pool(threads) if len(blocks) > 1 else None
    if pool is None:
        for block in blocks:
            fn(*block)
        return
    for _ in pool.map(lambda block: fn(*block), blocks):
        pass


def worker_pool(threads: int) -> ThreadPoolExecutor | None:
    """The renderer's pool of ``threads`` worker threads, kept for the next pass and render: a
    render makes about ten parallel passes, and starting their threads afresh each time measured a
    few milliseconds per render. ``None`` for one thread, or when called from a worker of a pool
    (its caller then runs the work itself, instead of waiting for workers that wait for it)."""
    if threads <= 1 or getattr(_worker, "busy", False):
        return None
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(
                max_workers=threads, thread_name_prefix="lens-blur", initializer=_mark_worker
            )
        return pool


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_worker = threading.local()


def _mark_worker() -> None:
    _worker.busy = True


def _forget_pools() -> None:
    """A forked child inherits the pools but not their threads: it starts its own."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)
