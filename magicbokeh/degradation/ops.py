"""Resize, noise, JPEG and unsharp masking: the steps the degradations are built from."""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from ..errors import MagicBokehError
from .params import RESIZE_MODES

logger = logging.getLogger(__name__)


def resize(img: np.ndarray, size_hw: tuple[int, int], mode: str) -> np.ndarray:
    """Resize (H, W, C) float32 to ``size_hw`` pixels with ``mode`` in :data:`RESIZE_MODES`."""
    if mode not in RESIZE_MODES:
        raise MagicBokehError(f"unknown resize mode {mode!r}; use one of {', '.join(RESIZE_MODES)}.")
    h, w = size_hw
    if (h, w) == img.shape[:2]:
        return img
    out = cv2.resize(img, (w, h), interpolation=RESIZE_MODES[mode])
    return out.reshape(h, w, -1)


def random_resize(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    prob: tuple[float, float, float],
    scale_range: tuple[float, float],
    base_hw: tuple[float, float] | None = None,
    modes: tuple[str, ...] = tuple(RESIZE_MODES),
) -> np.ndarray:
    """Resize by a random factor relative to ``base_hw`` (default: the image's own size).

    ``prob`` gives the chances of up / down / keep; up draws a factor in U(1, scale_range[1]), down in
    U(scale_range[0], 1); the mode is uniform over ``modes``. New size = floor(base * factor), >= 1 px.

    The sampling grid follows the actual size ratio. Upstream's first stage passes ``scale_factor`` to
    ``interpolate``, whose grid drifts by up to a pixel from the input's towards the far edge; we keep
    the low-quality image aligned with its ground truth instead.
    """
    kind = int(rng.choice(3, p=np.asarray(prob, dtype=np.float64) / sum(prob)))
    if kind == 0:
        factor = float(rng.uniform(1.0, scale_range[1]))
    elif kind == 1:
        factor = float(rng.uniform(scale_range[0], 1.0))
    else:
        factor = 1.0
    mode = modes[int(rng.choice(len(modes)))]
    bh, bw = img.shape[:2] if base_hw is None else base_hw
    size = (max(1, int(bh * factor)), max(1, int(bw * factor)))
    logger.debug("resize %s x%.3f (%s) -> %s", ("up", "down", "keep")[kind], factor, mode, size)
    return resize(img, size, mode)


def add_gaussian_noise(
    img: np.ndarray, sigma_255: float, gray: bool, rng: np.random.Generator
) -> np.ndarray:
    """Add N(0, (sigma_255/255)^2) noise to (H, W, 3) float32 in [0, 1] and clip to [0, 1].

    ``gray``: one noise field shared by the three channels (luminance noise) instead of one each.
    """
    h, w, c = img.shape
    noise = rng.standard_normal((h, w, 1 if gray else c), dtype=np.float32) * np.float32(sigma_255 / 255.0)
    return np.clip(img + noise, 0.0, 1.0)


def add_poisson_noise(
    img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator
) -> np.ndarray:
    """Add shot noise to (H, W, 3) float32 in [0, 1], clipped to [0, 1].

    As upstream: the image (or its luma, for ``gray``) is rounded to 8 bits, multiplied by
    vals = 2^ceil(log2(number of distinct 8-bit values)), Poisson-sampled and divided by vals; the
    difference to the rounded image, times ``scale`` (0.05-3), is the noise.
    """
    base = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None] if gray else img
    q = np.clip(np.rint(base * 255.0), 0, 255).astype(np.uint8)
    distinct = int(np.count_nonzero(np.bincount(q.ravel(), minlength=256)))
    vals = 2.0 ** math.ceil(math.log2(max(distinct, 1)))
    qf = q.astype(np.float64) / 255.0
    noise = rng.poisson(qf * vals) / vals - qf
    return np.clip(img + (noise * scale).astype(np.float32), 0.0, 1.0)


def add_random_noise(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    gaussian_prob: float,
    sigma_range: tuple[float, float],
    poisson_range: tuple[float, float],
    gray_prob: float,
) -> np.ndarray:
    """Gaussian noise (sigma_255 ~ U(sigma_range)) with probability ``gaussian_prob``, else Poisson
    noise (scale ~ U(poisson_range)); gray (shared across channels) with probability ``gray_prob``."""
    if rng.uniform() < gaussian_prob:
        sigma = float(rng.uniform(*sigma_range))
        gray = bool(rng.uniform() < gray_prob)
        logger.debug("gaussian noise sigma %.2f/255 gray=%s", sigma, gray)
        return add_gaussian_noise(img, sigma, gray, rng)
    scale = float(rng.uniform(*poisson_range))
    gray = bool(rng.uniform() < gray_prob)
    logger.debug("poisson noise scale %.3f gray=%s", scale, gray)
    return add_poisson_noise(img, scale, gray, rng)


def quantize_8bit(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to the 8-bit grid (k/255), float32."""
    return (np.rint(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """JPEG round trip of (H, W, 3) float32 RGB in [0, 1] through OpenCV (libjpeg, 4:2:0 chroma).

    The image is clipped and rounded to 8 bits first; ``quality`` in [1, 100] is rounded to an integer.
    Returns float32 on the 8-bit grid.
    """
    q = int(round(float(quality)))
    if not 1 <= q <= 100:
        raise MagicBokehError(f"JPEG quality must be in [1, 100]; got {quality}.")
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise MagicBokehError("OpenCV could not JPEG-encode the image; check that it is (H, W, 3).")
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) / np.float32(255.0)


def random_jpeg(img: np.ndarray, rng: np.random.Generator, quality_range: tuple[float, float]) -> np.ndarray:
    """JPEG round trip at a quality drawn uniformly from ``quality_range`` ([0, 100])."""
    quality = float(rng.uniform(*quality_range))  # a real number, as upstream; rounded by jpeg()
    logger.debug("jpeg quality %.1f", quality)
    return jpeg(img, quality)


def unsharp_mask(img: np.ndarray, *, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> np.ndarray:
    """Real-ESRGAN's unsharp mask (USM) of (H, W, 3) float32 in [0, 1], as applied to its ground truth.

    residual = img - GaussianBlur(img, 2*radius+1); pixels whose |residual| exceeds ``threshold``
    (8-bit units) get img + weight * residual, feathered by the same blur of that mask.
    """
    ksize = 2 * radius + 1
    residual = img - cv2.GaussianBlur(img, (ksize, ksize), 0)
    mask = (np.abs(residual) * 255 > threshold).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (ksize, ksize), 0).reshape(img.shape)
    sharp = np.clip(img + weight * residual, 0.0, 1.0)
    return (soft * sharp + (1.0 - soft) * img).astype(np.float32)
