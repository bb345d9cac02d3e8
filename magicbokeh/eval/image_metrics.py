"""Full-reference image metrics computed by the project: PSNR and SSIM (pure NumPy/OpenCV).

Convention (stated once, used by ``eval.sr`` and ``eval.bokeh``):

* Both images are 8-bit: uint8 arrays, or float arrays in [0, 1] quantised with
  :func:`magicbokeh.images.to_uint8` (``round(x * 255)``). Data range L = 255.
* ``y_channel=False``: all three RGB channels. ``y_channel=True``: ITU-R BT.601 luma of the 8-bit
  values, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (R, G, B in [0, 255], Y in
  [16, 235]), as SR papers compute it; the data range stays 255.
* ``crop_border=N`` drops N pixels from every side before scoring (SR papers use N = scale).
* PSNR = 10 log10(255² / MSE) with the MSE over every pixel and channel; identical images → ``inf``.
* SSIM = Wang et al. 2004: Gaussian window 11 × 11, σ = 1.5, K1 = 0.01, K2 = 0.03, population
  (biased) local statistics, the map averaged over the "valid" positions (windows fully inside the
  image), computed per channel and the channel values averaged.

The learned and no-reference metrics (LPIPS, DISTS, NIQE, MUSIQ, MANIQA, CLIP-IQA, FID) live in
:mod:`magicbokeh.eval.common` behind the optional ``pyiqa`` package.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import MagicBokehError
from ..images import to_uint8

__all__ = ["DATA_RANGE", "SSIM_WINDOW", "SSIM_SIGMA", "SSIM_K1", "SSIM_K2", "as_8bit", "rgb_to_y", "prepare", "psnr", "ssim"]

#: Peak value of the 8-bit data range.
DATA_RANGE: float = 255.0
#: SSIM Gaussian window side (pixels), standard deviation (pixels) and stabilising constants.
SSIM_WINDOW: int = 11
SSIM_SIGMA: float = 1.5
SSIM_K1: float = 0.01
SSIM_K2: float = 0.03
#: BT.601 luma weights for 8-bit RGB (studio swing, Y in [16, 235]).
_BT601_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_BT601_OFFSET = 16.0


def as_8bit(image: np.ndarray) -> np.ndarray:
    """An image as float64 8-bit values in [0, 255] (integers).

    Args:
        image: ``(H, W)`` or ``(H, W, 3)``; uint8, or float in [0, 1] (rounded to 8 bits).

    Returns:
        float64 array of the same shape holding the 8-bit values.
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise MagicBokehError("the image contains NaN or infinite values.")
        return to_uint8(arr).astype(np.float64)
    raise MagicBokehError(f"metrics take uint8 or float [0, 1] images; got dtype {arr.dtype}.")


def rgb_to_y(image255: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``(H, W, 3)`` RGB values in [0, 255]; ``(H, W)`` float64 in [16, 235]."""
    if image255.ndim != 3 or image255.shape[2] != 3:
        raise MagicBokehError(f"the Y channel needs an (H, W, 3) RGB image; got shape {image255.shape}.")
    return image255 @ _BT601_WEIGHTS + _BT601_OFFSET


def prepare(
    output: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, y_channel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 8-bit values, converted to Y if asked and border-cropped.

    Raises:
        MagicBokehError: the shapes differ, or the crop leaves nothing.
    """
    a, b = as_8bit(output), as_8bit(reference)
    if a.shape != b.shape:
        raise MagicBokehError(f"cannot compare images of shapes {a.shape} and {b.shape}.")
    if y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    if crop_border < 0:
        raise MagicBokehError(f"--crop-border must be >= 0; got {crop_border}.")
    if crop_border:
        h, w = a.shape[:2]
        if h <= 2 * crop_border or w <= 2 * crop_border:
            raise MagicBokehError(f"a {crop_border}-pixel border crop leaves nothing of a {w}x{h} image.")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr(output: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB on 8-bit data (L = 255); ``inf`` for identical images.

    Args:
        output, reference: ``(H, W, 3)`` (or ``(H, W)`` without ``y_channel``) uint8 or float [0, 1].
        crop_border: pixels dropped from every side before scoring.
        y_channel: score BT.601 luma instead of RGB.
    """
    a, b = prepare(output, reference, crop_border=crop_border, y_channel=y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


def _gaussian_window() -> np.ndarray:
    """The normalised ``(11, 11)`` Gaussian window, σ = 1.5."""
    r = (SSIM_WINDOW - 1) / 2.0
    x = np.arange(SSIM_WINDOW, dtype=np.float64) - r
    g = np.exp(-(x**2) / (2.0 * SSIM_SIGMA**2))
    g /= g.sum()
    return np.outer(g, g)


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two ``(H, W)`` float64 planes over the valid window positions."""
    import cv2

    if min(a.shape) < SSIM_WINDOW:
        raise MagicBokehError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (after any border crop); "
            f"got {a.shape[1]}x{a.shape[0]}."
        )
    window = _gaussian_window()
    m = (SSIM_WINDOW - 1) // 2

    def local_mean(x: np.ndarray) -> np.ndarray:
        # filter2D is a correlation; the window is symmetric. Keep only windows fully inside.
        return cv2.filter2D(x, cv2.CV_64F, window, borderType=cv2.BORDER_REFLECT)[m:-m, m:-m]

    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim(output: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al. 2004) on 8-bit data, in [-1, 1]; 1 for identical images.

    Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, L 255; per channel, then the channel mean.
    Arguments as :func:`psnr`.
    """
    a, b = prepare(output, reference, crop_border=crop_border, y_channel=y_channel)
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[2])]))
