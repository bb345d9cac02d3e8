"""Partial-occlusion fill for the layered renderer: hidden surfaces behind nearer layers.

A photo shows only the front surface. Each depth layer that meets a depth discontinuity is extended,
as an opaque hidden surface, under the nearer pixels next to that edge, with its own visible colours
spread by a push-pull pyramid (see docs/classical-occlusion.md).
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
    mask = (nearest - radius) > np.float32(OCCLUSION_JUMP_PX)
    return mask.ravel() if mask.any() else None


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
    and all that the band can reach (it may run past the bottom and right image edges); ``dist``
    (h, w) the distance of its pixels to those edges (:func:`edge_distance`). A pixel p is in the
    band when

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
    near = np.full((y1 - y0, x1 - x0), -np.inf, np.float32)  # past the image edge: nothing nearer
    near[: yy1 - y0, : xx1 - x0] = radius[y0:yy1, x0:xx1]
    closest = np.full((y1 - y0, x1 - x0), np.inf, np.float32)
    closest[: yy1 - y0, : xx1 - x0] = edge_dist[y0:yy1, x0:xx1]
    band = (near >= nearer_than) & (dist <= np.abs(near) + (abs(layer) + 2)) & (dist <= closest + _EDGE_TIE_PX)
    np.minimum(closest, dist, out=closest)
    edge_dist[y0:yy1, x0:xx1] = closest[: yy1 - y0, : xx1 - x0]
    return np.nonzero(band)


def edge_distance(edge_idx: np.ndarray, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) float32 distance (px, 5 x 5 chamfer) from each pixel of ``box`` to the nearest of the
    edge pixels ``edge_idx`` (flat indices in a photo ``width`` wide)."""
    y0, y1, x0, x1 = box
    seeds = np.full((y1 - y0, x1 - x0), 255, np.uint8)
    ey, ex = np.divmod(edge_idx, width)
    seeds[ey - y0, ex - x0] = 0
    return cv2.distanceTransform(seeds, cv2.DIST_L2, cv2.DIST_MASK_5)


#: Slack (px) when comparing distances to the edges of two layers: the two layers a surface is
#: split between share their edge pixels, and chamfer distances are approximate.
_EDGE_TIE_PX = 1.5


def fill_values(light: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The opaque surface a layer continues with at the band pixels ``ys``, ``xs``.

    ``light`` is the layer's (h, w, 4) premultiplied colour (0-2) and coverage (3) in the band's
    box; the band holds no member pixel of the layer (it is nearer). Returns (n, 6) float32
    values: the extended premultiplied colour and coverage, 0
    (members' occlusion), and the fill's own occlusion, kept apart from the members' because the
    fill lies behind nearer pixels whose occlusion already counts (see :mod:`magicbokeh.lens_blur`).
    """
    values = np.zeros((ys.size, 6), np.float32)
    if ys.size:
        filled = _push_pull(np.ascontiguousarray(light))  # opaque: coverage 1
        values[:, :4] = filled[ys, xs]
        values[:, 5] = values[:, 3]
    return values


def _push_pull(rgba: np.ndarray) -> np.ndarray:
    """The colours a layer continues with into its uncovered pixels, opaque, same shape.

    ``rgba``: (h, w, c) float32, premultiplied channels with the coverage (weight) in channel 3.
    Push-pull (Gortler et al. 1996, "The Lumigraph"): halve the resolution until the layer covers
    everything, then on the way back up let each level keep its own colour in proportion to its
    coverage and take the rest from the coarser, opaque level. Going down, a coarse pixel's weight
    is the summed weight of the ~4 fine pixels it replaces, clamped to 1 (the Gaussian pyrDown
    averages, i.e. divides by 4): partly covered pixels near the visible edge then keep their own
    colour, so holes continue the colours at their rim and fade to the wider average further in.
    On the three-layer ray-traced scenes this is 3-5 dB closer near edges than plain averaging.

    The result is meant for uncovered pixels, where the full-resolution blend would take all of
    its colour from the coarser level: so the last step is only that level, upsampled.
    """
    n = rgba.shape[2]
    levels = [rgba]
    while min(levels[-1].shape[:2]) > 2:
        down = cv2.pyrDown(levels[-1])
        alpha = cv2.extractChannel(down, 3)
        gain = np.minimum(np.float32(_PUSH_GAIN) * alpha, np.float32(1.0)) / np.maximum(alpha, np.float32(1e-6))
        levels.append(cv2.multiply(down, channels(gain, n)))
    # Coarsest level (<= 2 px a side): pixels the layer never reached take its mean colour. From
    # here on every level is opaque (coverage 1), so the way up needs no more normalising.
    coarsest = levels[-1]
    total = coarsest.reshape(-1, n).sum(axis=0)
    filled = _opaque(coarsest)
    if total[3] > 1e-6:
        filled[coarsest[..., 3] <= 1e-6] = total / total[3]
    for level in reversed(levels[:-1]):
        up = cv2.pyrUp(filled, dstsize=(level.shape[1], level.shape[0]))
        if level is rgba:
            return up
        keep = cv2.subtract(1.0, cv2.extractChannel(level, 3))
        filled = cv2.add(level, cv2.multiply(up, channels(keep, n)))
    return filled  # a layer of at most 2 px a side


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
