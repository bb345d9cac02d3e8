"""Upsampling a small depth map to the photo's size, guided by the photo's edges.

A fast guided filter (He & Sun 2015): the local linear model ``q = a * I + b`` of the map in
terms of the photo's luminance ``I`` is fitted at the map's resolution, and only the smooth
coefficients are upsampled, so edges come from the full-resolution photo at little cost.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    size = (2 * radius + 1, 2 * radius + 1)
    return cv2.boxFilter(x, -1, size, normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_upsample(
    low: np.ndarray, guide_rgb: np.ndarray, *, radius: int = 2, eps: float = 1e-3
) -> np.ndarray:
    """(H, W) float32 in [0, 1]: ``low`` (h, w) upsampled to ``guide_rgb``'s (H, W).

    Args:
        low: the map, float in [0, 1], same aspect ratio as the guide.
        guide_rgb: (H, W, 3) float32 photo in [0, 1].
        radius: window radius in pixels of ``low`` (2 = 5x5 map pixels).
        eps: regularisation; larger values follow the photo's edges less.
    """
    height, width = guide_rgb.shape[:2]
    h, w = low.shape
    low = np.asarray(low, np.float32)
    gray = cv2.cvtColor(np.ascontiguousarray(guide_rgb, np.float32), cv2.COLOR_RGB2GRAY)
    if (h, w) == (height, width):
        return np.clip(low, 0.0, 1.0)
    gray_low = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
    mean_i = _box(gray_low, radius)
    mean_p = _box(low, radius)
    cov_ip = _box(gray_low * low, radius) - mean_i * mean_p
    var_i = _box(gray_low * gray_low, radius) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    mean_a = cv2.resize(_box(a, radius), (width, height), interpolation=cv2.INTER_LINEAR)
    mean_b = cv2.resize(_box(b, radius), (width, height), interpolation=cv2.INTER_LINEAR)
    out = mean_a * gray
    out += mean_b
    return np.clip(out, 0.0, 1.0, out=out)


def upsample_map(low: np.ndarray, guide_rgb: np.ndarray, *, guided: bool = True) -> np.ndarray:
    """``low`` at the guide's size: guided when smaller, area-averaged when larger, as is when equal."""
    height, width = guide_rgb.shape[:2]
    if low.shape == (height, width):
        return np.asarray(low, np.float32)
    if low.shape[0] > height or not guided:
        interp = cv2.INTER_AREA if low.shape[0] > height else cv2.INTER_LINEAR
        return cv2.resize(np.asarray(low, np.float32), (width, height), interpolation=interp)
    return guided_upsample(low, guide_rgb)
