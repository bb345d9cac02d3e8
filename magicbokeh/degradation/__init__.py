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

The implementation is split by concern: :mod:`.params` (presets and published numbers),
:mod:`.kernels` (blur kernels), :mod:`.ops` (resize, noise, JPEG) and :mod:`.presets`
(:func:`degrade` and the two pipelines). Import the public names from this package.
"""

from __future__ import annotations

from .params import (
    DEFAULT_PRESET,
    KERNEL_TYPES,
    MAX_SCALE,
    MIN_LQ_SIDE_PX,
    PRESETS,
    RESIZE_MODES,
    KernelSpec,
    RealESRGANParams,
    ZoomParams,
)
from .kernels import (
    apply_kernel,
    bessel_j1,
    draw_kernel_spec,
    make_kernel,
    random_blur_kernel,
    shaped_kernel,
    sinc_kernel,
)
from .ops import (
    add_gaussian_noise,
    add_poisson_noise,
    add_random_noise,
    jpeg,
    quantize_8bit,
    random_resize,
    resize,
    unsharp_mask,
)
from .presets import (
    degrade,
    degrade_realesrgan,
    degrade_zoom,
    min_side_for_scale,
)

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
