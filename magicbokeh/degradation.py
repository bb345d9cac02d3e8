"""Synthetic low-quality captures: Real-ESRGAN's second-order degradation and a simple digital zoom.

MagicBokeh restores and blurs in one step, so it is trained (and evaluated) on photos degraded the way
Real-ESRGAN degrades its inputs. :func:`degrade` reproduces that pipeline with NumPy and OpenCV only,
because it runs in DataLoader workers and must not import torch.

Presets:

* ``"realesrgan"``: blur -> resize -> noise -> JPEG, twice, then resize to ``ori / scale`` with a final
  sinc filter and JPEG in random order (xinntao/Real-ESRGAN ``train_realesrnet_x4plus.yml``; every
  number lives in :class:`RealESRGANParams`).
* ``"zoom"``: a phone's digital zoom: area downscale by ``scale``, mild Gaussian blur and noise, JPEG
  at quality 75-90 (:class:`ZoomParams`).

Both end with a bicubic upscale back to the input size, so the output has the input's shape (the
paper feeds 512x512 inputs). Images are ``(H, W, 3)`` float32 sRGB in [0, 1]; noise strengths are in
8-bit units (sigma 10 means 10/255). All randomness comes from one ``numpy.random.Generator``: the same
seed gives the same output, bit for bit on the same machine and OpenCV build.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import MagicBokehError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PRESET",
    "KERNEL_TYPES",
    "MAX_SCALE",
    "MIN_LQ_SIDE_PX",
    "PRESETS",
    "RESIZE_MODES",
    "KernelSpec",
    "RealESRGANParams",
    "ZoomParams",
    "add_gaussian_noise",
    "add_poisson_noise",
    "add_random_noise",
    "apply_kernel",
    "bessel_j1",
    "degrade",
    "degrade_realesrgan",
    "degrade_zoom",
    "draw_kernel_spec",
    "jpeg",
    "make_kernel",
    "min_side_for_scale",
    "quantize_8bit",
    "random_blur_kernel",
    "random_resize",
    "resize",
    "shaped_kernel",
    "sinc_kernel",
    "unsharp_mask",
]

PRESETS: tuple[str, ...] = ("realesrgan", "zoom")
DEFAULT_PRESET = "realesrgan"

#: Largest supported ``scale`` (a 16x zoom of a 512 px crop leaves 32 px).
MAX_SCALE = 16.0
#: The low-quality image (input size / scale) must keep at least this many pixels per side: one JPEG
#: block, and enough for the resizes of the second stage (down to 0.3x) to leave a pixel.
MIN_LQ_SIDE_PX = 8

#: Blur kernel families of Real-ESRGAN, in the order of ``kernel_prob``.
KERNEL_TYPES: tuple[str, ...] = (
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso",
)

#: Resize modes. Upstream calls ``torch.nn.functional.interpolate`` without antialiasing; the OpenCV
#: flags below do exactly what those modes do (cv2 INTER_LINEAR/INTER_CUBIC are half-pixel centred,
#: cubic a = -0.75, no prefilter). "area" is an average pool upstream (adaptive_avg_pool2d);
#: INTER_AREA is the same box average, exact for integer factors and with fractional pixel weights
#: otherwise (adaptive pooling rounds the bin edges outwards instead), which is the closest primitive.
RESIZE_MODES: dict[str, int] = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
}

_BORDER = cv2.BORDER_REFLECT_101  # = torch "reflect" padding, which upstream's filter2D uses


@dataclass(frozen=True)
class RealESRGANParams:
    """Every published parameter of Real-ESRGAN's degradation (RealESRNet x4plus training config).

    Ranges are closed intervals sampled uniformly unless noted; probabilities are in [0, 1]; blur sigmas
    are in pixels of the image being blurred; noise sigmas in 8-bit units; JPEG quality in [0, 100].
    """

    # Blur kernels (both stages): family, odd size in [7, 21] padded to 21, sinc (ringing) instead.
    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    kernel_size_range: tuple[int, int] = (7, 21)
    kernel_pad_to: int = 21
    rotation_range: tuple[float, float] = (-math.pi, math.pi)
    #: Sinc cutoff (radians per pixel) for kernels smaller than ``sinc_small_below``, and otherwise.
    sinc_cutoff_small: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_cutoff_large: tuple[float, float] = (math.pi / 5, math.pi)
    sinc_small_below: int = 13

    # Stage 1.
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)  # up ~ U(1, 1.5), down ~ U(0.15, 1)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    # Stage 2 (resize relative to the target size, input / scale).
    second_blur_prob: float = 0.8
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    sinc_prob2: float = 0.1
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)

    # Final step: resize to input / scale, sinc filter, JPEG; "(a) resize, sinc, JPEG" with this
    # probability, else "(b) JPEG, resize, sinc".
    final_sinc_prob: float = 0.8
    final_sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)
    resize_then_jpeg_prob: float = 0.5
    resize_modes: tuple[str, ...] = tuple(RESIZE_MODES)


@dataclass(frozen=True)
class ZoomParams:
    """A simple digital zoom: what a phone does when it crops the sensor and upsamples.

    The crop is simulated by an area downscale by ``scale`` (the sensor integrates over its pixels),
    then lens and demosaicing softness (Gaussian blur, sigma in low-resolution pixels), read noise
    (Gaussian, sigma in 8-bit units, per channel unless gray), and the camera's JPEG. :func:`degrade`
    then upscales back (bicubic), as the phone does.
    """

    blur_sigma_range: tuple[float, float] = (0.3, 1.0)
    noise_range: tuple[float, float] = (1.0, 5.0)
    gray_noise_prob: float = 0.0
    jpeg_range: tuple[float, float] = (75.0, 90.0)
    downscale_mode: str = "area"


@dataclass(frozen=True)
class KernelSpec:
    """One drawn blur kernel, before it is built (see :func:`make_kernel`).

    Attributes:
        kind: one of :data:`KERNEL_TYPES` or ``"sinc"``.
        size: odd side length in pixels before padding.
        sigma_x, sigma_y: standard deviations in pixels (``sigma_y == sigma_x`` for isotropic kinds).
        theta: rotation in radians (0 for isotropic kinds).
        beta: shape exponent (1 for plain Gaussians).
        cutoff: sinc cutoff in radians per pixel, (0, pi] (sinc only).
        pad_to: side length of the returned kernel.
    """

    kind: str
    size: int
    sigma_x: float = 0.0
    sigma_y: float = 0.0
    theta: float = 0.0
    beta: float = 1.0
    cutoff: float = 0.0
    pad_to: int = 21


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------


def shaped_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, *,
    shape: str = "gaussian", beta: float = 1.0,
) -> np.ndarray:
    """A (size, size) float32 bivariate blur kernel summing to 1.

    With Q = x^T S^-1 x, S = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T (pixels):
    ``"gaussian"``: exp(-Q/2); ``"generalized"``: exp(-Q^beta / 2); ``"plateau"``: 1 / (1 + Q^beta).
    ``sigma_y`` defaults to ``sigma_x`` (isotropic).
    """
    if size < 1 or size % 2 == 0:
        raise MagicBokehError(f"kernel size must be a positive odd number of pixels; got {size}.")
    if shape not in ("gaussian", "generalized", "plateau"):
        raise MagicBokehError(f"unknown kernel shape {shape!r}; use gaussian, generalized or plateau.")
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if sigma_x <= 0 or sigma_y <= 0:
        raise MagicBokehError(f"kernel sigmas must be positive pixels; got {sigma_x}, {sigma_y}.")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    inv_cov = np.linalg.inv(rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T)
    ax = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(ax, ax)  # xx varies along columns (x), yy along rows (y)
    q = inv_cov[0, 0] * xx**2 + (inv_cov[0, 1] + inv_cov[1, 0]) * xx * yy + inv_cov[1, 1] * yy**2
    if shape == "gaussian":
        k = np.exp(-0.5 * q)
    elif shape == "generalized":
        k = np.exp(-0.5 * q**beta)
    else:
        k = 1.0 / (1.0 + q**beta)
    return (k / k.sum()).astype(np.float32)


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1, for real ``x`` (float64).

    Uses Bessel's integral J1(x) = (1/pi) * int_0^pi cos(t - x sin t) dt with the midpoint rule: the
    integrand is smooth, periodic and even, so the rule converges exponentially (error < 1e-12 for
    |x| < 100 with 128 nodes). Avoids a SciPy dependency for one special function.
    """
    x = np.asarray(x, dtype=np.float64)
    t = (np.arange(128) + 0.5) * (math.pi / 128)
    return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


def sinc_kernel(cutoff: float, size: int, *, pad_to: int | None = None) -> np.ndarray:
    """A circular low-pass ("2-D sinc") kernel: ideal disk pass-band of radius ``cutoff``, truncated.

    Args:
        cutoff: cutoff frequency in radians per pixel, in (0, pi] (pi = Nyquist).
        size: odd side length in pixels.
        pad_to: zero-pad to this odd side length (default: no padding).

    Returns:
        (size, size) or (pad_to, pad_to) float32 kernel summing to 1. Its value at radius r is
        cutoff * J1(cutoff * r) / (2 pi r), with cutoff^2 / (4 pi) at the centre.
    """
    if size < 1 or size % 2 == 0:
        raise MagicBokehError(f"sinc kernel size must be a positive odd number of pixels; got {size}.")
    if not 0 < cutoff <= math.pi:
        raise MagicBokehError(f"sinc cutoff must be in (0, pi] radians per pixel; got {cutoff}.")
    ax = np.arange(size, dtype=np.float64) - size // 2
    r = np.hypot(*np.meshgrid(ax, ax))
    safe_r = np.where(r == 0, 1.0, r)
    k = np.where(r == 0, cutoff**2 / (4 * math.pi), cutoff * bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r))
    k = k / k.sum()
    if pad_to is not None:
        k = _pad_kernel(k, pad_to)
    return k.astype(np.float32)


def _pad_kernel(k: np.ndarray, pad_to: int) -> np.ndarray:
    if pad_to < k.shape[0] or (pad_to - k.shape[0]) % 2:
        raise MagicBokehError(f"cannot centre a {k.shape[0]}-pixel kernel in {pad_to} pixels; use a larger odd size.")
    p = (pad_to - k.shape[0]) // 2
    return np.pad(k, p)


def _odd_size(rng: np.random.Generator, size_range: tuple[int, int]) -> int:
    sizes = np.arange(size_range[0] | 1, size_range[1] + 1, 2)  # the odd sizes, uniformly
    return int(rng.choice(sizes))


def _draw_beta(rng: np.random.Generator, beta_range: tuple[float, float]) -> float:
    # Upstream: half the draws below 1, half above, whatever the range's widths (not uniform).
    if rng.uniform() < 0.5:
        return float(rng.uniform(beta_range[0], 1.0))
    return float(rng.uniform(1.0, beta_range[1]))


def draw_kernel_spec(
    rng: np.random.Generator,
    sigma_range: tuple[float, float],
    *,
    betag_range: tuple[float, float] = (0.5, 4.0),
    betap_range: tuple[float, float] = (1.0, 2.0),
    sinc_prob: float = 0.1,
    kernel_types: tuple[str, ...] = KERNEL_TYPES,
    kernel_prob: tuple[float, ...] = RealESRGANParams.kernel_prob,
    size_range: tuple[int, int] = (7, 21),
    rotation_range: tuple[float, float] = (-math.pi, math.pi),
    sinc_cutoff_small: tuple[float, float] = (math.pi / 3, math.pi),
    sinc_cutoff_large: tuple[float, float] = (math.pi / 5, math.pi),
    sinc_small_below: int = 13,
    pad_to: int = 21,
    kind: str | None = None,
) -> KernelSpec:
    """Draw a Real-ESRGAN blur kernel's parameters (see :class:`RealESRGANParams` for the defaults).

    The size is a uniform odd number in ``size_range``; with probability ``sinc_prob`` the kernel is a
    sinc with cutoff from ``sinc_cutoff_small`` (size < ``sinc_small_below``) or ``sinc_cutoff_large``;
    otherwise a family from ``kernel_types`` with probabilities ``kernel_prob``, sigmas (pixels) from
    ``sigma_range``. Pass ``kind`` (a kernel type or ``"sinc"``) to force the family.
    """
    size = _odd_size(rng, size_range)
    if kind is None:
        if rng.uniform() < sinc_prob:
            kind = "sinc"
        else:
            p = np.asarray(kernel_prob, dtype=np.float64)
            kind = kernel_types[int(rng.choice(len(kernel_types), p=p / p.sum()))]
    if kind == "sinc":
        cutoff_range = sinc_cutoff_small if size < sinc_small_below else sinc_cutoff_large
        return KernelSpec("sinc", size, cutoff=float(rng.uniform(*cutoff_range)), pad_to=pad_to)
    if kind not in KERNEL_TYPES:
        raise MagicBokehError(f"unknown kernel type {kind!r}; use one of {', '.join(KERNEL_TYPES)} or sinc.")
    sigma_x = float(rng.uniform(*sigma_range))
    if kind.endswith("aniso"):
        sigma_y = float(rng.uniform(*sigma_range))
        theta = float(rng.uniform(*rotation_range))
    else:  # isotropic: one sigma, no rotation
        sigma_y, theta = sigma_x, 0.0
    beta = 1.0
    if kind.startswith("generalized"):
        beta = _draw_beta(rng, betag_range)
    elif kind.startswith("plateau"):
        beta = _draw_beta(rng, betap_range)
    return KernelSpec(kind, size, sigma_x, sigma_y, theta, beta, pad_to=pad_to)


def make_kernel(spec: KernelSpec) -> np.ndarray:
    """Build the (pad_to, pad_to) float32 kernel, summing to 1, that ``spec`` describes."""
    if spec.kind == "sinc":
        return sinc_kernel(spec.cutoff, spec.size, pad_to=spec.pad_to)
    shape = "generalized" if spec.kind.startswith("generalized") else (
        "plateau" if spec.kind.startswith("plateau") else "gaussian")
    k = shaped_kernel(spec.size, spec.sigma_x, spec.sigma_y, spec.theta, shape=shape, beta=spec.beta)
    return _pad_kernel(k, spec.pad_to).astype(np.float32)


def random_blur_kernel(
    rng: np.random.Generator, sigma_range: tuple[float, float], **options: object
) -> np.ndarray:
    """A random Real-ESRGAN blur kernel: (21, 21) float32 summing to 1.

    ``sigma_range`` is in pixels ((0.2, 3) for stage 1, (0.2, 1.5) for stage 2); ``options`` are
    those of :func:`draw_kernel_spec` (``betag_range``, ``betap_range``, ``sinc_prob``, ``kind``...).
    """
    return make_kernel(draw_kernel_spec(rng, sigma_range, **options))  # type: ignore[arg-type]


def apply_kernel(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel of ``img`` (H, W, C) float32 with a 2-D kernel, reflect-101 borders."""
    out = cv2.filter2D(img, -1, np.asarray(kernel, dtype=np.float32), borderType=_BORDER)
    return out.reshape(img.shape)  # filter2D drops a trailing channel axis of size 1


# --------------------------------------------------------------------------------------------------
# Resize, noise, JPEG
# --------------------------------------------------------------------------------------------------


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


def _random_jpeg(img: np.ndarray, rng: np.random.Generator, quality_range: tuple[float, float]) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------


def min_side_for_scale(scale: float) -> int:
    """Smallest image side in pixels that :func:`degrade` accepts for ``scale``."""
    return math.ceil(MIN_LQ_SIDE_PX * scale)


def _lq_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return int(h // scale), int(w // scale)


def degrade_realesrgan(
    img: np.ndarray, rng: np.random.Generator, scale: float, params: RealESRGANParams = RealESRGANParams()
) -> np.ndarray:
    """Real-ESRGAN's second-order degradation of (H, W, 3) float32 in [0, 1].

    Returns the low-quality image at (H // scale, W // scale), float32 on the 8-bit grid. Inputs are
    not checked here; :func:`degrade` checks them and upscales the result back.
    """
    p = params
    h, w = img.shape[:2]
    target = _lq_size(h, w, scale)
    kernel_opts = dict(
        kernel_types=p.kernel_types, kernel_prob=p.kernel_prob, size_range=p.kernel_size_range,
        rotation_range=p.rotation_range, sinc_cutoff_small=p.sinc_cutoff_small,
        sinc_cutoff_large=p.sinc_cutoff_large, sinc_small_below=p.sinc_small_below, pad_to=p.kernel_pad_to,
    )
    # The three kernels are drawn first, as upstream's dataset does before the model degrades.
    spec1 = draw_kernel_spec(rng, p.blur_sigma, betag_range=p.betag_range, betap_range=p.betap_range,
                             sinc_prob=p.sinc_prob, **kernel_opts)
    spec2 = draw_kernel_spec(rng, p.blur_sigma2, betag_range=p.betag_range2, betap_range=p.betap_range2,
                             sinc_prob=p.sinc_prob2, **kernel_opts)
    final_sinc = None
    if rng.uniform() < p.final_sinc_prob:
        final_sinc = sinc_kernel(float(rng.uniform(*p.final_sinc_cutoff)), _odd_size(rng, p.kernel_size_range),
                                 pad_to=p.kernel_pad_to)
    logger.debug("kernels: %s | %s | final sinc %s", spec1, spec2, final_sinc is not None)

    # 1. First order: blur, resize, noise, JPEG.
    out = apply_kernel(img, make_kernel(spec1))
    out = random_resize(out, rng, prob=p.resize_prob, scale_range=p.resize_range, modes=p.resize_modes)
    out = add_random_noise(out, rng, gaussian_prob=p.gaussian_noise_prob, sigma_range=p.noise_range,
                           poisson_range=p.poisson_scale_range, gray_prob=p.gray_noise_prob)
    out = _random_jpeg(out, rng, p.jpeg_range)

    # 2. Second order: blur (sometimes), resize relative to the target size, noise.
    if rng.uniform() < p.second_blur_prob:
        out = apply_kernel(out, make_kernel(spec2))
    out = random_resize(out, rng, prob=p.resize_prob2, scale_range=p.resize_range2,
                        base_hw=(h / scale, w / scale), modes=p.resize_modes)
    out = add_random_noise(out, rng, gaussian_prob=p.gaussian_noise_prob2, sigma_range=p.noise_range2,
                           poisson_range=p.poisson_scale_range2, gray_prob=p.gray_noise_prob2)

    # 3. Final: resize to the target + sinc, and JPEG, in random order.
    def resize_and_sinc(x: np.ndarray) -> np.ndarray:
        x = resize(x, target, p.resize_modes[int(rng.choice(len(p.resize_modes)))])
        return x if final_sinc is None else apply_kernel(x, final_sinc)

    if rng.uniform() < p.resize_then_jpeg_prob:
        out = _random_jpeg(resize_and_sinc(out), rng, p.jpeg_range2)
    else:
        out = resize_and_sinc(_random_jpeg(out, rng, p.jpeg_range2))
    return quantize_8bit(out)


def degrade_zoom(
    img: np.ndarray, rng: np.random.Generator, scale: float, params: ZoomParams = ZoomParams()
) -> np.ndarray:
    """Digital zoom of (H, W, 3) float32 in [0, 1]: the low-quality image at (H // scale, W // scale),
    float32 on the 8-bit grid. Inputs are not checked here; :func:`degrade` does."""
    p = params
    out = resize(img, _lq_size(*img.shape[:2], scale), p.downscale_mode)
    sigma = float(rng.uniform(*p.blur_sigma_range))
    out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=_BORDER).reshape(out.shape)
    noise = float(rng.uniform(*p.noise_range))
    gray = bool(rng.uniform() < p.gray_noise_prob)
    out = add_gaussian_noise(out, noise, gray, rng)
    logger.debug("zoom x%.2f: blur sigma %.2f px, noise sigma %.2f/255", scale, sigma, noise)
    return _random_jpeg(out, rng, p.jpeg_range)


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise MagicBokehError(
            f"degrade() needs an (H, W, 3) RGB image; got shape {arr.shape}. Convert grayscale or RGBA "
            "first (magicbokeh.images.to_rgb_float does)."
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(arr.dtype, np.floating):
        raise MagicBokehError(f"degrade() takes float images in [0, 1] or uint8; got dtype {arr.dtype}.")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise MagicBokehError("the image contains NaN or infinite values; fix or drop it before degrading.")
    lo, hi = float(out.min(initial=0.0)), float(out.max(initial=0.0))
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise MagicBokehError(
            f"a float image must hold values in [0, 1]; got [{lo:.3g}, {hi:.3g}] (divide 8-bit data by 255)."
        )
    return np.clip(out, 0.0, 1.0)


def degrade(
    image: np.ndarray,
    *,
    preset: str = DEFAULT_PRESET,
    scale: float = 4.0,
    seed: int | np.random.Generator | None = None,
    sharpen: bool = False,
    params: RealESRGANParams | ZoomParams | None = None,
) -> np.ndarray:
    """Simulate a low-quality capture of ``image``, at the input's size.

    Args:
        image (`np.ndarray`, shape `(H, W, 3)`): sRGB, float in [0, 1] or uint8. Both sides must be at
            least :func:`min_side_for_scale` (``ceil(8 * scale)``) pixels.
        preset (`str`): ``"realesrgan"`` (default) or ``"zoom"``; see the module docstring.
        scale (`float`): resolution loss in [1, 16]: the low-quality image is (H // scale, W // scale)
            before the bicubic upscale back.
        seed: an int >= 0, a ``numpy.random.Generator`` (consumed), or None for fresh entropy.
        sharpen (`bool`): unsharp-mask the input first (:func:`unsharp_mask`), as Real-ESRGAN does to
            its ground truth; the matching training target is then ``unsharp_mask(image)``.
        params: override the preset's parameters (:class:`RealESRGANParams` for ``"realesrgan"``,
            :class:`ZoomParams` for ``"zoom"``), e.g. ``dataclasses.replace(RealESRGANParams(), ...)``.

    Returns:
        `np.ndarray`, shape `(H, W, 3)`, float32 in [0, 1] on the 8-bit grid (k / 255). The same seed
        gives an identical array.
    """
    # 1. Check inputs.
    if preset not in PRESETS:
        raise MagicBokehError(f"unknown degradation preset {preset!r}; use one of: {', '.join(PRESETS)}.")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise MagicBokehError(f"scale must be a number in [1, {MAX_SCALE:g}]; got {scale!r}.") from None
    if not 1.0 <= scale <= MAX_SCALE:
        raise MagicBokehError(f"scale must be in [1, {MAX_SCALE:g}] (4 = Real-ESRGAN x4); got {scale:g}.")
    img = _check_image(image)
    h, w = img.shape[:2]
    need = min_side_for_scale(scale)
    if min(h, w) < need:
        raise MagicBokehError(
            f"image is {w}x{h}; with scale {scale:g} both sides must be at least {need} px (the "
            f"low-quality image keeps >= {MIN_LQ_SIDE_PX} px). Use a larger image or a smaller scale."
        )
    if isinstance(seed, (bool, np.bool_)) or (
        seed is not None and not isinstance(seed, (int, np.integer, np.random.Generator))
    ):
        raise MagicBokehError(f"seed must be an int >= 0, a numpy Generator or None; got {seed!r}.")
    if isinstance(seed, (int, np.integer)) and seed < 0:
        raise MagicBokehError(f"seed must be a non-negative integer; got {seed}.")
    expected = RealESRGANParams if preset == "realesrgan" else ZoomParams
    if params is None:
        params = expected()
    elif not isinstance(params, expected):
        raise MagicBokehError(
            f"preset {preset!r} takes {expected.__name__} parameters; got {type(params).__name__}."
        )
    rng = np.random.default_rng(seed)

    # 2. Degrade to the low-quality size.
    if sharpen:
        img = unsharp_mask(img)
    if isinstance(params, RealESRGANParams):
        lq = degrade_realesrgan(img, rng, scale, params)
    else:
        lq = degrade_zoom(img, rng, scale, params)

    # 3. Back to the input size, on the 8-bit grid.
    return quantize_8bit(resize(lq, (h, w), "bicubic"))
