"""Parameters of the degradations: presets, limits, Real-ESRGAN's published numbers, the zoom preset."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2


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

FILTER_BORDER = cv2.BORDER_REFLECT_101  # = torch "reflect" padding, which upstream's filter2D uses


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
