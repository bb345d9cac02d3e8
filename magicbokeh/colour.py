"""sRGB transfer curve and the BokehMe highlight boost."""

from __future__ import annotations

import numpy as np


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] values to linear light (IEC 61966-2-1)."""
    rgb = np.asarray(rgb, np.float32)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light to sRGB-encoded values, clipped to [0, 1]."""
    lin = np.clip(np.asarray(linear, np.float32), 0.0, None)
    out = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1.0 / 2.4) - 0.055)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def highlight_gain(
    rgb: np.ndarray, defocus_disparity: np.ndarray, *, threshold: float, ratio: float
) -> np.ndarray:
    """BokehMe's highlight boost factor, per pixel and channel (>= 1).

    ``1 + ratio * oof * hl`` with the out-of-focus mask ``clip(tanh(200 ((d - f)^2 - 0.01)), 0, 1)``
    (|d - f| > 0.1) and the highlight mask ``clip(tanh(10 (I - threshold)), 0, 1)`` on sRGB values.
    """
    oof = np.clip(np.tanh(200.0 * (np.square(defocus_disparity) - 0.01)), 0.0, 1.0)[..., None]
    hl = np.clip(np.tanh(10.0 * (np.asarray(rgb, np.float32) - threshold)), 0.0, 1.0)
    return (1.0 + ratio * oof * hl).astype(np.float32)
