"""Every focus and defocus formula, in one place (official MagicBokeh conventions).

Conventions: ``disparity`` maps are float32 in [0, 1] with 1 = nearest. ``defocus`` is the
official model's unitless ``|d - f| * K / 32``; ``coc_radius_px`` is the classical renderer's
circle-of-confusion radius in pixels, ``K * |d - f|`` (BokehMe's convention), so the same K means
the same blur in both backends.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import MagicBokehError
from .settings import FOCUS_WINDOW_RADIUS_PX, IN_FOCUS_DEFOCUS_THRESHOLD, K_RANGE


def normalise_disparity(raw: np.ndarray) -> np.ndarray:
    """Min-max normalise a relative disparity map to [0, 1] (1 = nearest), as the official code.

    Uses ``(d - min) / (max - min + 1e-8)``: a constant map becomes all zeros instead of dividing
    by zero. NaN or infinite values are rejected.
    """
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 2:
        raise MagicBokehError(f"a disparity map must be 2-D (H, W); got shape {raw.shape}.")
    lo, hi = float(raw.min()), float(raw.max())  # NaN and infinities show in these two
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        raise MagicBokehError(
            f"the disparity map has {bad} NaN or infinite values; fill or mask them before use."
        )
    # The same float32 operations as ``(raw - lo) / (hi - lo + 1e-8)``, without temporaries.
    out = np.subtract(raw, np.float32(lo))
    return np.divide(out, np.float32(hi - lo + 1e-8), out=out)


def quantise_disparity_8bit(disparity: np.ndarray) -> np.ndarray:
    """The official demo's 8-bit disparity: ``floor(d * 255) / 255`` (truncation, not rounding)."""
    scaled = np.clip(np.asarray(disparity, np.float32) * np.float32(255.0), 0.0, 255.0)
    # float32 multiply then astype(uint8), exactly as the official code (np.load(...) * 255).
    return (scaled.astype(np.uint8).astype(np.float32) / np.float32(255.0)).astype(np.float32)


def check_k(k: float) -> float:
    """Validate blur strength K in [0, 32] and return it as float."""
    try:
        k = float(k)
    except (TypeError, ValueError):
        raise MagicBokehError(f"blur strength K must be a number in [0, 32]; got {k!r}.") from None
    if not np.isfinite(k) or not (K_RANGE[0] <= k <= K_RANGE[1]):
        raise MagicBokehError(
            f"K={k:g} is outside [{K_RANGE[0]:g}, {K_RANGE[1]:g}]; lower the blur strength "
            "(32 matches the official results, 0 = no blur)."
        )
    return k


def check_point(x: float, y: float, width: int, height: int) -> tuple[int, int]:
    """Round a focus point to pixel indices and check it lies inside a ``width`` x ``height`` image."""
    try:
        xi, yi = int(round(float(x))), int(round(float(y)))
    except (TypeError, ValueError):
        raise MagicBokehError(f"focus point must be two numbers x,y; got {x!r},{y!r}.") from None
    if not (0 <= xi < width and 0 <= yi < height):
        raise MagicBokehError(
            f"focus point ({xi}, {yi}) is outside the {width}x{height} image; "
            f"x must be in [0, {width - 1}] and y in [0, {height - 1}]."
        )
    return xi, yi


def focus_from_point(
    disparity: np.ndarray,
    x: float,
    y: float,
    *,
    parity: bool = False,
    window_radius: int = FOCUS_WINDOW_RADIUS_PX,
) -> float:
    """Focus disparity for a clicked pixel ``(x, y)`` (column, row) of the upright image.

    Default (robust): the median disparity over a ``(2 * window_radius + 1)`` square window clipped
    to the image, so a click on a thin edge or a noisy pixel still picks the intended plane.
    ``parity=True`` reproduces the official demo exactly: the 8-bit truncated disparity at exactly
    that pixel, divided by 255.
    """
    h, w = disparity.shape
    xi, yi = check_point(x, y, w, h)
    if parity:
        return float(quantise_disparity_8bit(disparity[yi : yi + 1, xi : xi + 1])[0, 0])
    r = max(int(window_radius), 0)
    patch = disparity[max(yi - r, 0) : yi + r + 1, max(xi - r, 0) : xi + r + 1]
    return float(np.median(patch))


def focus_from_mask(disparity: np.ndarray, mask: np.ndarray, *, parity: bool = False) -> float:
    """Focus disparity for a subject mask: the median disparity where the mask is non-zero.

    Matches the official ``inference.py``: any non-zero mask value counts (uint8 >= 1), the median
    is the lower middle element for an even count (as ``torch.median``), and an empty mask gives
    0.0 (the farthest plane). ``parity=True`` takes the median of the 8-bit truncated disparity.
    """
    mask = np.asarray(mask)
    if mask.shape != disparity.shape:
        raise MagicBokehError(
            f"focus mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{disparity.shape[1]}x{disparity.shape[0]}; pass a mask of the image's size."
        )
    values = (quantise_disparity_8bit(disparity) if parity else disparity)[mask > 0]
    if values.size == 0:
        return 0.0
    values = np.sort(values, kind="stable")
    return float(values[(values.size - 1) // 2])


def defocus_map(
    disparity: np.ndarray, focus_disparity: float, k: float, *, focal_range: float = 0.0
) -> np.ndarray:
    """Unitless defocus strength fed to the one-step model.

    Args:
        disparity: (H, W) float32 in [0, 1], 1 = nearest.
        focus_disparity: disparity of the focal plane, in [0, 1].
        k: blur strength in [0, 32]; 0 leaves the photo sharp.
        focal_range: width (disparity units) around the focus that stays sharp; 0 = official.

    Returns:
        (H, W) float32: ``max(|d - f| - focal_range / 2, 0) * k / 32``, in [0, k / 32].
    """
    dist = np.subtract(np.asarray(disparity, np.float32), np.float32(focus_disparity))
    np.abs(dist, out=dist)
    if focal_range > 0:
        dist = np.maximum(dist - np.float32(focal_range / 2.0), np.float32(0.0))
    return np.multiply(dist, np.float32(k / 32.0), out=dist)


def in_focus_mask(defocus: np.ndarray) -> np.ndarray:
    """The official in-focus mask: ``defocus <= 0.1`` (bool, True = in focus)."""
    return np.asarray(defocus) <= IN_FOCUS_DEFOCUS_THRESHOLD


class ModelCondition(NamedTuple):
    """What the one-step model is conditioned on (see :func:`model_condition`)."""

    #: (H, W) float32 unitless defocus ``|d - f| * K / 32`` (after the focal range), in [0, K / 32].
    defocus: np.ndarray
    #: (H, W) bool, True where ``defocus <= 0.1`` (the official in-focus mask).
    in_focus: np.ndarray
    #: The focus disparity the map was computed with (8-bit truncated when ``quantize``).
    focus_disparity: float


def model_condition(
    disparity: np.ndarray, focus_disparity: float, k: float, *, quantize: bool = True,
    focal_range: float = 0.0,
) -> ModelCondition:
    """The MagicBokeh model condition: quantise → defocus map → in-focus mask, for inference and training.

    Args:
        disparity: (H, W) float in [0, 1], 1 = nearest.
        focus_disparity: focal-plane disparity in [0, 1].
        k: blur strength in [0, 32].
        quantize: truncate disparity and focus to 8 bits first, as the official demo feeds the model
            (``floor(d * 255) / 255``); False keeps the full precision.
        focal_range: sharp band around the focus (disparity units); 0 = official.
    """
    f = float(focus_disparity)
    if quantize:
        disparity = quantise_disparity_8bit(disparity)
        f = float(quantise_disparity_8bit(np.array([[f]], np.float32))[0, 0])
    defocus = defocus_map(disparity, f, k, focal_range=focal_range)
    return ModelCondition(defocus, in_focus_mask(defocus), f)


def signed_coc_radius_px(
    disparity: np.ndarray, focus_disparity: float, k: float, *, focal_range: float = 0.0
) -> np.ndarray:
    """Signed circle-of-confusion radius in pixels: ``K * (d - f)``, positive = nearer than focus.

    Within ``focal_range / 2`` of the focus the radius is 0 (fully sharp); beyond it the distance is
    measured from the edge of that range, so blur grows continuously.
    """
    diff = np.subtract(np.asarray(disparity, np.float32), np.float32(focus_disparity))
    if focal_range > 0:
        diff = np.sign(diff) * np.maximum(np.abs(diff) - np.float32(focal_range / 2.0), np.float32(0.0))
    return np.multiply(diff, np.float32(k), out=diff)
