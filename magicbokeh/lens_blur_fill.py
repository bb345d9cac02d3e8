"""Partial-occlusion fill for the layered renderer: hidden surfaces behind nearer layers.

A photo shows only the front surface. Each depth layer that meets a depth discontinuity is extended,
as an opaque hidden surface, under the nearer pixels next to that edge, with its own visible colours
spread by a push-pull pyramid (see docs/classical-occlusion.md).

Distances to the edges and the pyramid start on a grid twice coarser than the photo, aligned with
even pixel coordinates: 2 x 2 cells. The band a fill covers keeps its exact rule at full
resolution, with the distance of each pixel's cell; the fill's colour is read back bilinearly.
Both are quantities the blur smears over many pixels, and the coarse grid costs a quarter.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Blur-radius jump (pixels) between 8-neighbours that marks a depth discontinuity (occlusion
#: edge). Smooth surfaces change far less per pixel (a ground plane at K = 32 about 0.03 px).
OCCLUSION_JUMP_PX = 2.0


def far_side_of_edges(radius: np.ndarray) -> np.ndarray | None:
    """Flat bool mask of pixels next to a much nearer 8-neighbour (their surface continues behind
    it), or ``None`` when the scene has no depth discontinuity. ``radius`` is the signed CoC radius
    (px), which grows towards the camera."""
    nearest = cv2.dilate(radius, np.ones((3, 3), np.uint8))  # max over the 3 x 3 neighbourhood
    # OpenCV's threaded subtract and compare: 0 / 255 per pixel (a 12 MP map is 50 MB a pass).
    mask = cv2.compare(cv2.subtract(nearest, radius, dst=nearest), float(OCCLUSION_JUMP_PX), cv2.CMP_GT)
    return np.not_equal(mask, 0).ravel() if cv2.countNonZero(mask) else None


def hidden_band(
    radius: np.ndarray,
    layer: int,
    dist: np.ndarray,
    box: tuple[int, int, int, int],
    edge_dist: np.ndarray,
    nearer_than: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Where a layer's surface is taken to continue hidden behind nearer pixels: the band's pixels
    (rows, columns in ``box``, row-major).

    ``box`` = (y0, y1, x0, x1) is a full-resolution box holding the layer's occlusion-edge pixels
    and all that the band can reach (``y0``, ``x0`` even; it may run past the bottom and right
    image edges); ``dist`` the distance of its 2 x 2 cells to those edges (:func:`edge_distance`),
    which each pixel takes from its cell. A pixel p is in the band when

    * it hides the layer: its signed radius is >= ``nearer_than`` (pixels occlude only layers a
      few radii behind their own, see :mod:`magicbokeh.lens_blur`);
    * it lies within ``|r(p)| + |layer| + 2`` px of the layer's edge: the blurred nearer surface is
      partly transparent up to ``|r(p)|`` px inside its edge and the layer's own blur reaches
      ``|layer|`` further, so beyond that the fill could never be seen;
    * no farther layer's edge is clearly closer (``edge_dist``, updated here, holds that distance
      for the layers done so far): a hidden point belongs to the surface whose edge it is nearest,
      and a nearer layer's fill would otherwise cover the true background behind a neighbouring
      object (as inpainting from the nearest boundary does).
    """
    height, width = radius.shape
    y0, y1, x0, x1 = box
    yy1, xx1 = min(y1, height), min(x1, width)
    dist = np.repeat(np.repeat(dist, 2, axis=0), 2, axis=1)[: y1 - y0, : x1 - x0]  # each pixel its cell's
    near = np.full((y1 - y0, x1 - x0), -np.inf, np.float32)  # past the image edge: nothing nearer
    near[: yy1 - y0, : xx1 - x0] = radius[y0:yy1, x0:xx1]
    closest = np.full((y1 - y0, x1 - x0), np.inf, np.float32)
    closest[: yy1 - y0, : xx1 - x0] = edge_dist[y0:yy1, x0:xx1]
    band = (near >= nearer_than) & (dist <= np.abs(near) + (abs(layer) + 2)) & (dist <= closest + _EDGE_TIE_PX)
    np.minimum(closest, dist, out=closest)
    edge_dist[y0:yy1, x0:xx1] = closest[: yy1 - y0, : xx1 - x0]
    return np.nonzero(band)


def cells(box: tuple[int, int, int, int]) -> tuple[int, int]:
    """(rows, columns) of the 2 x 2 cells covering ``box`` (y0, y1, x0, x1)."""
    return (box[1] - box[0] + 1) // 2, (box[3] - box[2] + 1) // 2


def edge_distance(
    edge_idx: np.ndarray, width: int, box: tuple[int, int, int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """(h, w) float32 distance (px, 5 x 5 chamfer on the cells) from each 2 x 2 cell of ``box`` to
    the nearest cell holding one of the edge pixels ``edge_idx`` (flat indices in a photo
    ``width`` wide); 0 in those cells. Written into ``out`` when given."""
    y0, _, x0, _ = box
    seeds = np.full(cells(box), 255, np.uint8)
    ey, ex = np.divmod(edge_idx, width)
    seeds[(ey - y0) // 2, (ex - x0) // 2] = 0
    dist = cv2.distanceTransform(seeds, cv2.DIST_L2, cv2.DIST_MASK_5)
    return np.multiply(dist, np.float32(2.0), out=out)


#: Slack (px) when comparing distances to the edges of two layers: the two layers a surface is
#: split between share their edge pixels, and chamfer distances are approximate.
_EDGE_TIE_PX = 1.5


def fill_colours(sums: np.ndarray, *, clamp=None, blend=None) -> np.ndarray:
    """The opaque surface a layer continues with, on its 2 x 2 cells.

    ``sums`` (h, w, 4) float32: per cell, the summed premultiplied colour (0-2) and coverage (3)
    of the layer's pixels in it (:func:`magicbokeh.lens_blur_layers.layer_light_cells`). Returns
    (h, w, 4) float32 colour with coverage 1, read back at the band's pixels with
    :func:`sample_cells`. ``clamp`` and ``blend`` replace :func:`clamp_weight` and
    :func:`blend_up` (the compiled twins do, in place).
    """
    return _push_pull(np.ascontiguousarray(sums, dtype=np.float32), clamp or clamp_weight, blend or blend_up)


def sample_cells(filled: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(n, c) values of the cell grid ``filled`` (h, w, c) at the pixels ``ys``, ``xs`` of its box:
    OpenCV's 2x bilinear upsampling (cell centres at pixel 2 i + 0.5, edges clamped)."""
    h, w = filled.shape[:2]
    up = cv2.resize(filled, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    return up[ys, xs]


def _push_pull(sums: np.ndarray, clamp, blend) -> np.ndarray:
    """The colours a layer continues with into its uncovered cells, opaque, same shape.

    ``sums``: (h, w, c) float32, premultiplied channels with the coverage (weight) in channel 3.
    Push-pull (Gortler et al. 1996, "The Lumigraph"): halve the resolution until the layer covers
    everything, then on the way back up let each level keep its own colour in proportion to its
    coverage and take the rest from the coarser, opaque level. A cell's weight is the summed
    weight of the pixels (or, further down, the ~4 finer cells) it replaces, clamped to 1 (the
    Gaussian pyrDown averages, i.e. divides by 4): partly covered cells near the visible edge then
    keep their own colour, so holes continue the colours at their rim and fade to the wider average
    further in. On the three-layer ray-traced scenes this is 3-5 dB closer near edges than plain
    averaging.
    """
    n = sums.shape[2]
    levels = [clamp(sums, 1.0)]
    while min(levels[-1].shape[:2]) > 2:
        levels.append(clamp(cv2.pyrDown(levels[-1]), _PUSH_GAIN))
    # Coarsest level (<= 2 px a side): cells the layer never reached take its mean colour. From
    # here on every level is opaque (coverage 1), so the way up needs no more normalising.
    coarsest = levels[-1]
    total = coarsest.reshape(-1, n).sum(axis=0)
    filled = _opaque(coarsest)
    if total[3] > 1e-6:
        filled[coarsest[..., 3] <= 1e-6] = total / total[3]
    for level in reversed(levels[:-1]):
        filled = blend(level, cv2.pyrUp(filled, dstsize=(level.shape[1], level.shape[0])))
    return filled


def clamp_weight(level: np.ndarray, gain: float) -> np.ndarray:
    """``level`` with its weight (channel 3) times ``gain`` clamped to 1, colours scaled alike."""
    alpha = cv2.extractChannel(level, 3)
    scale = np.minimum(np.float32(gain) * alpha, np.float32(1.0)) / np.maximum(alpha, np.float32(1e-6))
    return cv2.multiply(level, channels(scale, level.shape[2]))


def blend_up(level: np.ndarray, up: np.ndarray) -> np.ndarray:
    """``level`` keeps its own colour in proportion to its weight (channel 3) and takes the rest
    from ``up``, the opaque coarser level upsampled."""
    keep = cv2.subtract(1.0, cv2.extractChannel(level, 3))
    return cv2.add(level, cv2.multiply(up, channels(keep, level.shape[2])))


#: Weight gain per pyramid level in :func:`_push_pull`: a coarse pixel stands for 2 x 2 fine ones.
_PUSH_GAIN = 4.0


def _opaque(rgba: np.ndarray) -> np.ndarray:
    """(h, w, c) premultiplied channels divided by the coverage in channel 3 where there is some
    (empty pixels stay 0)."""
    alpha = cv2.extractChannel(rgba, 3)
    inv = np.divide(np.float32(1.0), alpha, out=np.zeros_like(alpha), where=alpha > 1e-6)
    return cv2.multiply(rgba, channels(inv, rgba.shape[2]))


def channels(plane: np.ndarray, n: int) -> np.ndarray:
    """(h, w) float32 repeated into (h, w, n), to scale an n-channel image per pixel."""
    return cv2.merge([plane] * n)
