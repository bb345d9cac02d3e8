"""The two degradation presets and :func:`degrade`, their checked entry point."""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from ..errors import MagicBokehError
from .params import (
    DEFAULT_PRESET, FILTER_BORDER, MAX_SCALE, MIN_LQ_SIDE_PX, PRESETS, RealESRGANParams, ZoomParams,
)
from .kernels import apply_kernel, draw_kernel_spec, draw_odd_size, make_kernel, sinc_kernel
from .ops import (
    add_gaussian_noise, add_random_noise, quantize_8bit, random_jpeg, random_resize, resize, unsharp_mask,
)

logger = logging.getLogger(__name__)


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
        final_sinc = sinc_kernel(float(rng.uniform(*p.final_sinc_cutoff)), draw_odd_size(rng, p.kernel_size_range),
                                 pad_to=p.kernel_pad_to)
    logger.debug("kernels: %s | %s | final sinc %s", spec1, spec2, final_sinc is not None)

    # 1. First order: blur, resize, noise, JPEG.
    out = apply_kernel(img, make_kernel(spec1))
    out = random_resize(out, rng, prob=p.resize_prob, scale_range=p.resize_range, modes=p.resize_modes)
    out = add_random_noise(out, rng, gaussian_prob=p.gaussian_noise_prob, sigma_range=p.noise_range,
                           poisson_range=p.poisson_scale_range, gray_prob=p.gray_noise_prob)
    out = random_jpeg(out, rng, p.jpeg_range)

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
        out = random_jpeg(resize_and_sinc(out), rng, p.jpeg_range2)
    else:
        out = resize_and_sinc(random_jpeg(out, rng, p.jpeg_range2))
    return quantize_8bit(out)


def degrade_zoom(
    img: np.ndarray, rng: np.random.Generator, scale: float, params: ZoomParams = ZoomParams()
) -> np.ndarray:
    """Digital zoom of (H, W, 3) float32 in [0, 1]: the low-quality image at (H // scale, W // scale),
    float32 on the 8-bit grid. Inputs are not checked here; :func:`degrade` does."""
    p = params
    out = resize(img, _lq_size(*img.shape[:2], scale), p.downscale_mode)
    sigma = float(rng.uniform(*p.blur_sigma_range))
    out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=FILTER_BORDER).reshape(out.shape)
    noise = float(rng.uniform(*p.noise_range))
    gray = bool(rng.uniform() < p.gray_noise_prob)
    out = add_gaussian_noise(out, noise, gray, rng)
    logger.debug("zoom x%.2f: blur sigma %.2f px, noise sigma %.2f/255", scale, sigma, noise)
    return random_jpeg(out, rng, p.jpeg_range)


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
