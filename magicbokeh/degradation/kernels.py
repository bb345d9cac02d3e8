"""Blur kernels of the Real-ESRGAN degradation: shaped Gaussians, sinc (ringing), random draws."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import MagicBokehError
from .params import FILTER_BORDER, KERNEL_TYPES, KernelSpec, RealESRGANParams


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


def draw_odd_size(rng: np.random.Generator, size_range: tuple[int, int]) -> int:
    """A kernel side drawn uniformly from the odd integers in ``size_range`` (pixels, inclusive)."""
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
    size = draw_odd_size(rng, size_range)
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
    out = cv2.filter2D(img, -1, np.asarray(kernel, dtype=np.float32), borderType=FILTER_BORDER)
    return out.reshape(img.shape)  # filter2D drops a trailing channel axis of size 1
