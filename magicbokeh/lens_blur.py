"""Physically based, weight-free lens blur: layered, occlusion-aware, in linear light.

The scene is cut into depth layers one pixel of blur radius apart (signed circle-of-confusion
radius ``K * (d - f)``). Pixels between two layer radii are split linearly between them, which
keeps blur continuous. Each layer's premultiplied colour, coverage and occlusion are blurred with
the aperture kernel of its radius, at full resolution below :data:`HALF_RES_RADIUS_PX` and on a
grid only twice coarser above it, so a bokeh disc keeps a hard rim (50 % to 10 % within about
1.5 px) at any size, and composited front to back:

* A layer's light reaches the sensor through the transmittance ``clip(1 - S, 0, 1)``, where ``S``
  is the summed blurred occlusion of the layers in front of it. Visible pixels partition the image,
  so the occlusions of neighbouring surfaces add up (a product, "over", would let a quarter of the
  background through where two blurred neighbours meet).
* A pixel occludes once, with full weight, in the farther of its two layers.
* Each occluding mask is widened by one pixel into neighbouring pixels of the same smooth surface
  before blurring: discs of neighbouring radii do not add up to exactly one where two layers meet,
  and the gap would show the hidden-surface fill as a thin ring (the seams of issue #16).
* The hidden-surface fill occludes too, but it lies behind nearer pixels whose occlusion already
  counts, so its transmittance multiplies instead of adding (adding would count twice the rays
  that both the nearer pixel and the hidden surface block).

The accumulated colour is divided by the accumulated coverage, which also normalises image
borders, so brightness (in linear light) is preserved. The rules live in
:mod:`magicbokeh.lens_blur_layers` and :mod:`magicbokeh.lens_blur_fill`; the compositing runs in
:mod:`magicbokeh.lens_blur_compiled` (Numba, cost growing with the blur radius rather than the
number of layers) or, without Numba, in :mod:`magicbokeh.lens_blur_reference`. See
docs/classical-occlusion.md.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np

from .apertures import Aperture, DiskAperture
from .backends import ProgressCallback
from .colour import highlight_gain
from .focus import check_k, signed_coc_radius_px
from .lens_blur_fill import OCCLUSION_JUMP_PX
from .lens_blur_layers import OCCLUDE_AFTER_LAYERS, build_layers, for_row_blocks
from .settings import HIGHLIGHT_RATIO, HIGHLIGHT_THRESHOLD

logger = logging.getLogger(__name__)

__all__ = ["render_lens_blur", "OCCLUDE_AFTER_LAYERS", "OCCLUSION_JUMP_PX", "compiled_available", "warm_up_renderer", "warm_up_in_background"]

#: Blur radius (px) from which a layer is blurred on a grid twice coarser (see
#: ``half_res_radius_px``). On the 2x grid the rim still falls from 50 % to 10 % within 1.8 px.
HALF_RES_RADIUS_PX = 6.0
#: Engines: ``compiled`` (Numba, radius-proportional cost), ``reference`` (a dense convolution per
#: layer: plain NumPy and OpenCV), ``auto`` (compiled when Numba imports).
ENGINES = ("auto", "compiled", "reference")


def warm_up_renderer() -> float:
    """Compile (first run: ~15 s, then cached beside the package) or load (~0.4 s) the compiled
    compositor by rendering a tiny scene with every kind of layer. Returns seconds; 0 without
    Numba."""
    if not compiled_available():
        return 0.0
    t0 = time.perf_counter()
    size = 24
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([xx / size, yy / size, np.full_like(xx, 0.5)], axis=-1)
    disparity = np.where((yy > 8) & (xx > 8), 0.9, yy / size).astype(np.float32)  # an edge and a slope
    render_lens_blur(image, disparity, 0.45, 32.0, threads=1)  # fine and coarse layers, a fill
    return time.perf_counter() - t0


def warm_up_in_background() -> threading.Thread:
    """:func:`warm_up_renderer` in a daemon thread (the CLI starts it before reading the photo)."""
    thread = threading.Thread(target=warm_up_renderer, name="lens-blur-warm-up", daemon=True)
    thread.start()
    return thread


def compiled_available() -> bool:
    """True when the compiled compositor (Numba) can be imported."""
    try:
        from . import lens_blur_compiled  # noqa: F401
    except ImportError:
        return False
    return True


def render_lens_blur(
    image: np.ndarray,
    disparity: np.ndarray,
    focus_disparity: float,
    k: float,
    *,
    aperture: Aperture | None = None,
    focal_range: float = 0.0,
    highlight_boost: bool = False,
    highlight_threshold: float = HIGHLIGHT_THRESHOLD,
    highlight_ratio: float = HIGHLIGHT_RATIO,
    fill_hidden: bool = True,
    progress: ProgressCallback | None = None,
    half_res_radius_px: float = HALF_RES_RADIUS_PX,
    engine: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    """Render lens blur on a photo with a disparity map.

    Args:
        image: (H, W, 3) float32 sRGB in [0, 1].
        disparity: (H, W) float32 in [0, 1], 1 = nearest.
        focus_disparity: disparity of the focal plane, in [0, 1].
        k: blur strength in [0, 32]; the circle of confusion has radius ``k * |d - f|`` pixels.
        aperture: kernel shape (default: a disc).
        focal_range: disparity width around the focus that stays fully sharp.
        highlight_boost: brighten out-of-focus highlights before blurring (BokehMe style).
        fill_hidden: give each layer a plausible surface behind nearer layers at depth
            discontinuities (partial occlusion); ``False``: the hidden part takes the colour of
            what hides it.
        progress: optional ``progress(fraction, stage)``.
        half_res_radius_px: layers blurred by at least this many pixels are blurred on a grid
            twice coarser (2 x 2 average, kernel of half the radius, bilinear back); ``inf``: all
            at full resolution.
        engine: ``auto``, ``compiled`` or ``reference`` (see :data:`ENGINES`); same result.
        threads: worker threads of the compiled engine (default: OpenCV's thread count); the
            result does not depend on it.

    Returns:
        (H, W, 3) float32 sRGB in [0, 1]. ``k == 0`` returns an exact copy of ``image``.
    """
    k = check_k(k)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if not half_res_radius_px > 0:
        raise ValueError(f"half_res_radius_px must be positive, not {half_res_radius_px!r}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    if k == 0.0:
        return image.copy()
    aperture = aperture or DiskAperture()
    if engine == "auto":
        engine = "compiled" if compiled_available() else "reference"
        if engine == "reference":
            logger.warning("numba is not installed: the classical renderer runs its slow reference path")
    radius = np.ascontiguousarray(
        signed_coc_radius_px(disparity, focus_disparity, k, focal_range=focal_range), dtype=np.float32
    )
    n_threads = max(1, int(threads if threads is not None else cv2.getNumThreads()))
    if engine == "compiled":
        from .lens_blur_compiled_colour import decode_rows, finish_rows

        linear = np.empty_like(image)
        for_row_blocks(lambda y0, y1: decode_rows(image, linear, y0, y1), image.shape[0], n_threads)
    else:
        linear = srgb_to_linear_fast(image)
    if highlight_boost:
        linear *= highlight_gain(
            image, radius / np.float32(k), threshold=highlight_threshold, ratio=highlight_ratio
        )
    if engine == "compiled":
        from .lens_blur_compiled import composite_layers
        from .lens_blur_compiled_layers import COMPILED_RULES

        layers = build_layers(radius, linear, fill_hidden=fill_hidden, rules=COMPILED_RULES, threads=n_threads)

        report = None if progress is None else (lambda f: progress(f, "lens blur"))
        out = np.empty(linear.shape, np.float32)
        # Each band is encoded by the thread that composited it, while it is still in cache.
        composite_layers(
            layers, aperture, half_res_radius_px, threads=n_threads, progress=report,
            finish=lambda rows, colour: finish_rows(colour, linear[rows], out[rows]),
        )  # fmt: skip
        return out
    from .lens_blur_reference import composite_layers as composite_reference

    colour = composite_reference(build_layers(radius, linear, fill_hidden=fill_hidden), aperture, half_res_radius_px)
    if progress is not None:
        progress(1.0, "lens blur")
    return _finish(colour, linear)


def srgb_to_linear_fast(rgb: np.ndarray) -> np.ndarray:
    """:func:`colour.srgb_to_linear` (same curve, float32) with OpenCV's vectorised power (the
    reference path; :func:`magicbokeh.lens_blur_compiled_colour.decode_rows` is its twin)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    out = np.empty_like(rgb)
    for rows in _row_chunks(rgb.shape[0]):
        part, dst = rgb[rows], out[rows]
        cv2.pow((part + np.float32(0.055)) * np.float32(1.0 / 1.055), 2.4, dst=dst)
        np.copyto(dst, part * np.float32(1.0 / 12.92), where=part <= np.float32(0.04045))
    return out


def _encode_srgb(linear: np.ndarray, out: np.ndarray) -> None:
    """sRGB-encode ``linear`` into the C-contiguous ``out`` of the same shape (clipped to [0, 1])."""
    lin = np.maximum(linear, np.float32(0.0))
    cv2.pow(lin, 1.0 / 2.4, dst=out)
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    np.copyto(out, lin * np.float32(12.92), where=lin <= np.float32(0.0031308))
    np.clip(out, 0.0, 1.0, out=out)


def _finish(colour: np.ndarray, linear: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) sRGB: the accumulated premultiplied colour divided by its coverage (channel 3),
    the input's ``linear`` colour where nothing landed, encoded (into ``out`` when given). The
    reference path; :func:`magicbokeh.lens_blur_compiled_colour.finish_rows` is its twin."""
    if out is None:
        out = np.empty(linear.shape, np.float32)
    for rows in _row_chunks(colour.shape[0]):
        coverage = colour[rows, :, 3:4]
        lin = colour[rows, :, :3] / np.maximum(coverage, np.float32(1e-6))
        np.copyto(lin, linear[rows], where=coverage <= 1e-6)  # nothing landed here: keep the input
        _encode_srgb(lin, out[rows])
    return out


#: Rows per chunk of the per-pixel colour passes. Their temporaries then stay small (in cache, and
#: reused by the allocator) instead of frame-sized arrays that the kernel must map in afresh: at
#: 12 MP the page faults of whole-frame temporaries cost more than the arithmetic.
_CHUNK_ROWS = 64


def _row_chunks(height: int) -> list[slice]:
    return [slice(y, min(y + _CHUNK_ROWS, height)) for y in range(0, height, _CHUNK_ROWS)]
