"""Subject-mask checks, point checks and the overlay the app shows (no model code here)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import MagicBokehError
from ..focus import check_point

#: Point labels: 1 = on the subject (positive), 0 = not the subject (negative), as in SAM.
POSITIVE, NEGATIVE = 1, 0


def check_mask(mask: Any, width: int, height: int, *, what: str = "subject mask") -> np.ndarray:
    """A subject mask as (H, W) bool, True where the official rule counts it (any value > 0).

    Accepts bool, 8-bit soft masks (LDF's 0..255) or float masks; a (H, W, 1) map is squeezed.

    Raises:
        MagicBokehError: a mask that is not 2-D, not ``width`` x ``height``, or selects no pixel.
    """
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise MagicBokehError(f"the {what} must be a single-channel (H, W) map; got shape {arr.shape}.")
    if arr.shape != (height, width):
        raise MagicBokehError(
            f"the {what} is {arr.shape[1]}x{arr.shape[0]} but the photo is {width}x{height}; "
            "make the mask from this photo (or resize it to the photo's size)."
        )
    if arr.dtype != bool and not np.all(np.isfinite(arr)):
        raise MagicBokehError(f"the {what} has NaN or infinite values.")
    out = arr > 0
    if not out.any():
        raise MagicBokehError(f"the {what} is empty (no pixel selected); click on the subject or pick another mask.")
    return out


def check_points(points: Iterable[Sequence[float]], width: int, height: int) -> list[tuple[float, float, int]]:
    """Validate prompt points ``[x, y, label]`` in the photo's pixels (label 1 = subject, 0 = not).

    ``[x, y]`` without a label counts as positive. At least one positive point is required.

    Raises:
        MagicBokehError: a malformed point, a label other than 0/1, a point outside the photo, or no
            positive point.
    """
    out: list[tuple[float, float, int]] = []
    for i, p in enumerate(points if points is not None else []):
        try:
            vals = [float(v) for v in p]
        except (TypeError, ValueError):
            raise MagicBokehError(f"point {i + 1} must be [x, y] or [x, y, label]; got {p!r}.") from None
        if len(vals) not in (2, 3) or not np.all(np.isfinite(vals)):
            raise MagicBokehError(f"point {i + 1} must be [x, y] or [x, y, label] with finite numbers; got {p!r}.")
        label = int(vals[2]) if len(vals) == 3 else POSITIVE
        if len(vals) == 3 and vals[2] not in (0.0, 1.0):
            raise MagicBokehError(f"point {i + 1}: label must be 1 (subject) or 0 (not the subject); got {p[2]!r}.")
        check_point(vals[0], vals[1], width, height)  # the one bounds rule, with its message
        out.append((vals[0], vals[1], label))
    if not any(label == POSITIVE for _, _, label in out):
        raise MagicBokehError("give at least one positive point (label 1) on the subject.")
    return out


def mask_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    colour: tuple[int, int, int] = (255, 48, 48),
    alpha: float = 0.45,
    outline: bool = True,
) -> np.ndarray:
    """The photo with the mask tinted on top, (H, W, 3) uint8, for display.

    Args:
        image: (H, W, 3) uint8, or float in [0, 1].
        mask: (H, W) bool, uint8 0..255 (soft, tinted in proportion) or float in [0, 1].
        colour: tint, 8-bit RGB.
        alpha: tint opacity at full mask, in [0, 1].
        outline: draw the mask's 1-px boundary in the full colour.
    """
    rgb = np.asarray(image)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    m = np.asarray(mask)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or m.shape != rgb.shape[:2]:
        raise MagicBokehError(f"overlay needs an (H, W, 3) image and an (H, W) mask; got {rgb.shape} and {m.shape}.")
    if m.dtype == bool:
        weight = m.astype(np.float32)
    elif m.dtype == np.uint8:
        weight = m.astype(np.float32) / 255.0
    else:
        weight = np.clip(m.astype(np.float32), 0.0, 1.0)
    a = (float(alpha) * weight)[..., None]
    out = rgb.astype(np.float32) * (1.0 - a) + np.asarray(colour, np.float32) * a
    if outline:
        import cv2

        solid = (weight >= 0.5).astype(np.uint8)
        edge = solid.astype(bool) & ~cv2.erode(solid, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE).astype(bool)
        out[edge] = colour
    return (out + 0.5).astype(np.uint8)
