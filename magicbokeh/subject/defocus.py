"""Keep a whole subject sharp: the one place for the subject-defocus math (our extension).

* Focal plane: the official median disparity under the mask (:func:`magicbokeh.focus.focus_from_mask`).
* Defocus: the official map (:func:`magicbokeh.focus.defocus_map`) multiplied by a weight that is 0
  on the subject and ``d / (feather_px + 1)`` at Euclidean distance ``d`` from it, so a band of
  ``feather_px`` pixels around the subject's edge is feathered and every pixel at ``feather_px + 1``
  or more keeps exactly the official defocus: the background blurs as without the option.
* In-focus region (the MagicBokeh backend's attention mask): the union of the subject and the
  official in-focus region.

The subject is where the mask is at least half on (bool True, uint8 >= 128, float >= 0.5); the
focal plane uses the official rule (any non-zero value), so for a bool mask they are the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MagicBokehError
from ..focus import defocus_map, focus_from_mask, in_focus_mask
from .masks import check_mask

#: Width (px) over which the defocus rises from 0 on the subject to the official value.
SUBJECT_FEATHER_PX = 2.0
#: Backend option carrying the (H, W) weight of :func:`subject_weight` when the subject is kept sharp.
SUBJECT_WEIGHT_OPTION = "subject_weight"


@dataclass
class SubjectDefocus:
    """Attributes:
    defocus: (H, W) float32, 0 on the subject, official ``|d - f| * K / 32`` beyond the feather.
    focus_disparity: the focal plane in [0, 1] (official median under the mask).
    weight: (H, W) float32 in [0, 1], 0 on the subject, 1 from ``feather_px + 1`` away; multiply any
        other blur measure by it (e.g. the classical renderer's signed CoC radius).
    subject: (H, W) bool, the pixels kept sharp.
    in_focus: (H, W) bool, subject | official in-focus (``official defocus <= 0.1``).
    """

    defocus: np.ndarray
    focus_disparity: float
    weight: np.ndarray
    subject: np.ndarray
    in_focus: np.ndarray


def solid_subject(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: where a bool, 8-bit or float [0, 1] mask is at least half on."""
    m = np.asarray(mask)
    if m.dtype == bool:
        return m.copy()
    return m >= (128 if m.dtype == np.uint8 else 0.5)


def subject_weight(subject: np.ndarray, feather_px: float = SUBJECT_FEATHER_PX) -> np.ndarray:
    """(H, W) float32: 0 on ``subject`` (bool), ``d / (feather_px + 1)`` at distance ``d`` px from it,
    exactly 1 from ``feather_px + 1`` px (the first outside pixel is at distance 1)."""
    import cv2

    if feather_px < 0:
        raise MagicBokehError(f"feather width must be >= 0 px; got {feather_px:g}.")
    outside = (~np.asarray(subject, bool)).astype(np.uint8)
    if feather_px == 0:
        return outside.astype(np.float32)
    dist = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.minimum(dist / np.float32(feather_px + 1.0), 1.0).astype(np.float32)


def apply_subject_weight(
    defocus: np.ndarray, in_focus: np.ndarray, weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """A backend's own (defocus, in-focus mask) with the subject kept sharp: defocus times ``weight``,
    in-focus united with the subject (``weight == 0``). ``weight=None`` returns them unchanged."""
    if weight is None:
        return defocus, in_focus
    weight = np.asarray(weight, np.float32)
    if weight.shape != np.shape(defocus):
        raise MagicBokehError(f"subject weight is {weight.shape[::-1]} but the defocus map is {np.shape(defocus)[::-1]}.")
    return (defocus * weight).astype(np.float32), np.asarray(in_focus, bool) | (weight == 0)


def weighted_disparity(
    disparity: np.ndarray, focus_disparity: float, weight: np.ndarray | None, *, focal_range: float = 0.0
) -> np.ndarray:
    """A disparity map whose signed circle of confusion (:func:`magicbokeh.focus.signed_coc_radius_px`)
    is the official one times ``weight``: the focal plane on the subject (``weight == 0``), the input
    itself where ``weight == 1`` (bit for bit), and in the feather band the distance beyond the focal
    range scaled by the weight. Lets a renderer that takes a disparity keep the subject sharp."""
    d = np.asarray(disparity, np.float32)
    if weight is None:
        return d
    w = np.asarray(weight, np.float32)
    if w.shape != d.shape:
        raise MagicBokehError(f"subject weight is {w.shape[::-1]} but the disparity is {d.shape[::-1]}.")
    f = np.float32(focus_disparity)
    half = np.float32(max(float(focal_range), 0.0) / 2.0)
    diff = d - f
    beyond = np.maximum(np.abs(diff) - half, 0.0)
    scaled = f + np.sign(diff) * (half + beyond * w)
    out = np.where(beyond > 0, scaled, d)  # inside the focal range the radius is 0 either way
    out = np.where(w >= 1.0, d, out)
    return np.where(w <= 0.0, f, out).astype(np.float32)


def subject_defocus(
    disparity: np.ndarray,
    mask: np.ndarray,
    k: float,
    *,
    focal_range: float = 0.0,
    feather_px: float = SUBJECT_FEATHER_PX,
    parity: bool = False,
) -> SubjectDefocus:
    """Defocus that keeps the whole subject sharp (see the module docstring).

    Args:
        disparity: (H, W) float32 in [0, 1], 1 = nearest.
        mask: (H, W) subject mask (bool, uint8 0..255 or float [0, 1]) of the same size.
        k: blur strength in [0, 32].
        focal_range: as :func:`magicbokeh.focus.defocus_map`.
        feather_px: width in pixels of the band outside the subject where the defocus ramps up (1-2).
        parity: official 8-bit truncated median for the focal plane.

    Raises:
        MagicBokehError: a mask of another size, or one with no subject pixel.
    """
    h, w = np.asarray(disparity).shape
    check_mask(mask, w, h)
    subject = solid_subject(mask)
    if not subject.any():
        raise MagicBokehError("the subject mask has no pixel at least half on; nothing to keep sharp.")
    focus = focus_from_mask(disparity, mask, parity=parity)
    official = defocus_map(disparity, focus, k, focal_range=focal_range)
    weight = subject_weight(subject, feather_px)
    return SubjectDefocus(
        defocus=(official * weight).astype(np.float32),
        focus_disparity=focus,
        weight=weight,
        subject=subject,
        in_focus=in_focus_mask(official) | subject,
    )
