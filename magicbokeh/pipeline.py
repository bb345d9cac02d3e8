"""The one inference core: photo + depth source + focus + K -> rendered photo and its maps.

The app, the CLI, the tests and the benchmarks all call :func:`render`. Steps:
1 decode the photo, 2 get disparity (cached per photo and source), 3 resolve the focus,
4 build the defocus map and in-focus mask, 5 run the chosen backend, 6 return a RenderResult.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from . import depth as depth_mod
from . import processing
from .backends import ProgressCallback, get_backend
from .depth import DEFAULT_INPUT_SIZE
from .errors import MagicBokehError
from .focus import (
    check_k,
    check_point,
    defocus_map,
    focus_from_mask,
    focus_from_point,
    in_focus_mask,
)
from .images import Photo, content_key, disparity_from_map, load_map, load_photo
from .processing import KUnits
from .settings import BLADES_RANGE, FOCAL_RANGE_MAX, K_DEFAULT

logger = logging.getLogger(__name__)

APERTURE_SHAPES = ("circle", "polygon")


@dataclass(frozen=True)
class RenderSettings:
    """Run-time settings shared by every backend.

    Attributes:
        k: blur strength in [0, 32]; 0 = no blur (restoration only for MagicBokeh).
        backend: registered backend name ("classical", "magicbokeh", ...).
        focal_range: disparity width in [0, 1] around the focus that stays fully sharp.
        aperture: "circle" or "polygon" (classical renderer).
        blades: polygon blade count in [3, 12].
        rotation_deg: polygon rotation in degrees.
        highlight_boost: brighten out-of-focus highlights (classical renderer).
        backend_options: extra options for the backend (e.g. seed, tile_batch for MagicBokeh).
    """

    k: float = K_DEFAULT
    backend: str = "classical"
    focal_range: float = 0.0
    aperture: str = "circle"
    blades: int = 6
    rotation_deg: float = 0.0
    highlight_boost: bool = False
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    def checked(self) -> "RenderSettings":
        """Validate every field; raise MagicBokehError naming the bad value and the valid range."""
        check_k(self.k)
        if not (0.0 <= float(self.focal_range) <= FOCAL_RANGE_MAX):
            raise MagicBokehError(
                f"focal range {self.focal_range:g} is outside [0, {FOCAL_RANGE_MAX:g}] (disparity units)."
            )
        if self.aperture not in APERTURE_SHAPES:
            raise MagicBokehError(
                f"unknown aperture shape {self.aperture!r}; choose {' or '.join(APERTURE_SHAPES)}."
            )
        if not (BLADES_RANGE[0] <= int(self.blades) <= BLADES_RANGE[1]):
            raise MagicBokehError(f"blades={self.blades} is outside [{BLADES_RANGE[0]}, {BLADES_RANGE[1]}].")
        return self

    def backend_call_options(self) -> dict[str, Any]:
        """Options handed to the backend: the shared optics plus backend-specific ones."""
        return {
            "focal_range": float(self.focal_range),
            "aperture": self.aperture,
            "blades": int(self.blades),
            "rotation_deg": float(self.rotation_deg),
            "highlight_boost": bool(self.highlight_boost),
            **dict(self.backend_options),
        }


@dataclass(frozen=True)
class Focus:
    """Where to focus: a pixel, a subject mask, a disparity value, or automatic.

    Use the constructors :meth:`point`, :meth:`mask`, :meth:`disparity`, :meth:`auto`.
    """

    kind: str = "auto"
    x: float | None = None
    y: float | None = None
    mask_source: Any = None
    value: float | None = None
    parity: bool = False

    @classmethod
    def point(cls, x: float, y: float, *, parity: bool = False) -> "Focus":
        """Focus at pixel (x = column, y = row) of the upright photo; ``parity`` = official demo."""
        return cls(kind="point", x=float(x), y=float(y), parity=parity)

    @classmethod
    def mask(cls, mask: Any, *, parity: bool = False) -> "Focus":
        """Focus on the median disparity under a subject mask (path or array, non-zero = subject)."""
        return cls(kind="mask", mask_source=mask, parity=parity)

    @classmethod
    def disparity(cls, value: float) -> "Focus":
        """Focus on a disparity value in [0, 1] (1 = nearest)."""
        value = float(value)
        if not np.isfinite(value) or not (0.0 <= value <= 1.0):
            raise MagicBokehError(f"focus disparity {value:g} is outside [0, 1] (1 = nearest).")
        return cls(kind="disparity", value=value)

    @classmethod
    def auto(cls) -> "Focus":
        """Focus on the nearest large region (median of the nearest 20 % of the image)."""
        return cls(kind="auto")

    def describe(self) -> str:
        if self.kind == "point":
            return f"point ({self.x:.0f}, {self.y:.0f}){' [parity]' if self.parity else ''}"
        if self.kind == "mask":
            return "subject mask"
        if self.kind == "disparity":
            return f"disparity {self.value:.3f}"
        return "automatic (nearest large region)"


@dataclass
class RenderResult:
    """Everything a render produced.

    Attributes:
        image: (H, W, 3) float32 RGB in [0, 1]: the input's size, or the processed size when a
            ``max_side`` downscale was asked for without ``match_input_size``.
        photo: the decoded input (the downscaled photo when the result is at the processed size).
        disparity: (H, W) float32 in [0, 1], 1 = nearest (the map actually used).
        defocus: (H, W) float32, the official ``|d - f| * K / 32`` (with the focal range applied).
        in_focus: (H, W) bool, ``defocus <= 0.1``.
        focus_disparity: focal plane disparity in [0, 1].
        focus_point: the focus pixel (x, y) when focus came from a point, else None.
        backend: backend actually used.
        depth_source: where the disparity came from.
        approximate_depth: True when no real depth was available.
        timings: seconds per stage ("decode", "depth", "render", "total").
        messages: human-readable notes, in order.
        processed_size: (width, height) actually rendered (see ``max_side``).
        k_user: the K asked for; ``settings.k`` is the K the renderer used (they differ only with
            ``k_units="input"`` and a downscale).
        input_size: (width, height) of the decoded input.
    """

    image: np.ndarray
    photo: Photo
    disparity: np.ndarray
    defocus: np.ndarray
    in_focus: np.ndarray
    focus_disparity: float
    focus_point: tuple[int, int] | None
    settings: RenderSettings
    backend: str
    depth_source: str
    approximate_depth: bool
    timings: dict[str, float]
    messages: list[str]
    processed_size: tuple[int, int] | None = None
    k_user: float | None = None
    input_size: tuple[int, int] | None = None

    def info(self) -> dict[str, Any]:
        """JSON-serialisable summary (sizes, focus, backend, depth source, timings, messages)."""
        w, h = self.input_size or (self.photo.rgb.shape[1], self.photo.rgb.shape[0])
        oh, ow = self.image.shape[:2]
        settings = asdict(self.settings)
        settings["backend_options"] = {k: v for k, v in dict(self.settings.backend_options).items()}
        out = {
            "input_size": [w, h],
            "output_size": [ow, oh],
            "focus_disparity": round(float(self.focus_disparity), 6),
            "focus_point": list(self.focus_point) if self.focus_point else None,
            "in_focus_fraction": round(float(self.in_focus.mean()), 4),
            "K": float(self.settings.k),
            "backend": self.backend,
            "depth_source": self.depth_source,
            "approximate_depth": self.approximate_depth,
            "settings": settings,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "messages": list(self.messages),
        }
        if self.processed_size is not None and list(self.processed_size) != [w, h]:
            out["processed_size"] = list(self.processed_size)
        if self.k_user is not None and float(self.k_user) != float(self.settings.k):
            out["K_requested"] = float(self.k_user)  # "K" is what the renderer used
        return out


def resolve_disparity(
    photo: Photo,
    depth: Any = "auto",
    *,
    depth_is_depth: bool = False,
    seed_xy: tuple[int, int] | None = None,
    subject_mask: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    depth_input_size: int = DEFAULT_INPUT_SIZE,
    depth_device: str | None = None,
) -> depth_mod.DepthResult:
    """Disparity for a photo from a depth spec, cached per (photo, source).

    Args:
        photo: the decoded photo.
        depth: ``"auto"`` (a Depth Anything model if loadable, else approximate; see
            :func:`magicbokeh.depth.choose_depth_model`), a depth-model name (``dadepth``,
            ``small``, ``base``, ``large``), hub id, folder or ``.pth``, a map file (``.png``
            8/16-bit, ``.npy``), an array, or ``"approximate"``.
        depth_is_depth: the supplied map is depth (far = large) rather than disparity.
        seed_xy: subject seed for the approximate fallback (the clicked point).
        subject_mask: (H, W) subject mask for the approximate fallback (a focus mask).
        depth_input_size: the depth network's shorter-side input in pixels (official 518).
        depth_device: device of the depth network (``cpu``, ``cuda``...); None = the estimator's
            default (``$MAGICBOKEH_DEVICE``, else CUDA when available). The cache is shared by
            every device.
    """
    w, h = photo.size
    cache = depth_mod.DEPTH_CACHE
    is_map = isinstance(depth, np.ndarray) or (
        isinstance(depth, str) and depth not in ("auto", "approximate") and _looks_like_map_file(depth)
    )
    if is_map:
        raw = load_map(depth, what="depth map" if depth_is_depth else "disparity map")
        key = (photo.key, "map", content_key(raw), depth_is_depth)
        hit = cache.get(key)
        if hit:
            return hit
        result = depth_mod.DepthResult(
            disparity_from_map(raw, w, h, is_depth=depth_is_depth),
            source=f"supplied {'depth' if depth_is_depth else 'disparity'} map"
            + (f" ({depth})" if isinstance(depth, str) else ""),
        )
        cache.put(key, result)
        return result

    messages: list[str] = []
    if depth != "approximate":
        model_source, why = depth_mod.choose_depth_model(None if depth == "auto" else str(depth))
        if depth_device is None:
            estimator = depth_mod.get_estimator(model_source, input_size=depth_input_size)
        else:
            estimator = depth_mod.get_estimator(model_source, device=depth_device, input_size=depth_input_size)
        key = (photo.key, "model", estimator.source, estimator.input_size)
        reason = estimator.unavailable_reason()
        if reason is None:
            hit = cache.get(key)
            if hit:
                return hit
            if progress:
                progress(0.0, "estimating depth")
            try:
                disparity = estimator(photo.rgb)
            except MagicBokehError as exc:
                if depth != "auto":
                    raise
                reason = str(exc)
            else:
                notes = (f"Depth: {estimator.label} ({why}).",) if depth == "auto" else ()
                result = depth_mod.DepthResult(disparity, source=estimator.label, messages=notes)
                cache.put(key, result)
                return result
        if depth != "auto":
            raise MagicBokehError(reason)
        messages.append(reason + " Using approximate depth.")

    seed = seed_xy if seed_xy is not None else (w // 2, h // 2)
    subject_key = content_key(subject_mask) if subject_mask is not None else seed
    key = (photo.key, "approximate", subject_key)
    hit = cache.get(key)
    if hit:
        # The map is shared; the notes belong to this call (why it fell back, or none if asked for).
        return dataclasses.replace(hit, messages=tuple(messages))
    result = depth_mod.DepthResult(
        depth_mod.approximate_disparity(photo.rgb, seed, subject_mask=subject_mask),
        source=depth_mod.APPROXIMATE_LABEL,
        approximate=True,
        messages=tuple(messages),
    )
    cache.put(key, result)
    return result


def _looks_like_map_file(spec: str) -> bool:
    from pathlib import Path

    path = Path(spec).expanduser()
    if path.suffix.lower() in (".pth", ".pt"):  # an upstream depth-model checkpoint, not a map
        return False
    if path.is_file():
        return True
    if path.suffix.lower() in (".npy", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".exr", ".pfm"):
        raise MagicBokehError(f"cannot read depth map {spec!r}: no such file.")
    return False


def load_focus_mask(focus: Focus, width: int, height: int) -> np.ndarray:
    """The focus mask of a mask focus as a float (H, W) map, checked against the photo size."""
    raw = load_map(focus.mask_source, what="focus mask")
    if raw.shape != (height, width):
        raise MagicBokehError(
            f"focus mask is {raw.shape[1]}x{raw.shape[0]} but the image is {width}x{height}; "
            "pass a mask of the image's size."
        )
    return raw


def resolve_focus(
    focus: Focus, disparity: np.ndarray, *, mask: np.ndarray | None = None
) -> tuple[float, tuple[int, int] | None]:
    """(focus disparity in [0, 1], focus pixel or None) for a focus spec on a disparity map.

    ``mask``: the mask focus's map when the caller has already loaded it (saves reading it twice).
    """
    h, w = disparity.shape
    if focus.kind == "point":
        xi, yi = check_point(focus.x, focus.y, w, h)
        return focus_from_point(disparity, xi, yi, parity=focus.parity), (xi, yi)
    if focus.kind == "mask":
        if mask is None:
            mask = load_focus_mask(focus, w, h)
        return focus_from_mask(disparity, mask, parity=focus.parity), None
    if focus.kind == "disparity":
        return float(focus.value), None
    nearest = disparity[disparity >= np.quantile(disparity, 0.8)]
    return float(np.median(nearest)), None


def render(
    image: Any,
    *,
    depth: Any = "auto",
    depth_is_depth: bool = False,
    focus: Focus | None = None,
    settings: RenderSettings | None = None,
    progress: ProgressCallback | None = None,
    depth_input_size: int = DEFAULT_INPUT_SIZE,
    max_side: int | None = None,
    match_input_size: bool = True,
    k_units: KUnits = "processed",
    depth_device: str | None = None,
) -> RenderResult:
    """Render one photo. See :class:`RenderSettings`, :class:`Focus` and :func:`resolve_disparity`.

    Args:
        max_side: processing size: the long side (pixels, in [64, 8192]) at which the photo is
            rendered. Larger photos are downscaled (area averaging) together with a supplied
            disparity map, focus mask and focus point. None (default) = the original size, exactly
            as without this option.
        match_input_size: when the photo was downscaled, resize the result (Lanczos) and the maps
            back to the input's size, so before/after and the download keep the input's size.
            False returns everything at the processed size.
        k_units: ``"processed"`` (default, the official/CLI convention): ``settings.k`` is in
            pixels of the processed image. ``"input"`` (the app): ``settings.k`` is in pixels of the
            input photo and is scaled by processed/input long side (see
            :func:`magicbokeh.processing.k_for_processing`), so the blur looks the same at any
            processing size.
        depth_device: device of the depth network (see :func:`resolve_disparity`); None = default.

    Raises:
        MagicBokehError: bad input or an unavailable backend, with a message saying what to do.
    """
    t_start = time.perf_counter()
    settings = (settings or RenderSettings()).checked()
    focus = focus or Focus.auto()
    focus_x_in, focus_y_in = focus.x, focus.y
    timings: dict[str, float] = {}

    # 1. Decode, then (optionally) downscale to the processing size.
    t0 = time.perf_counter()
    photo = load_photo(image)
    timings["decode"] = time.perf_counter() - t0
    messages = list(photo.messages)
    input_photo = photo
    size_plan = processing.plan(*photo.size, max_side)
    k_user = float(settings.k)
    focus_mask_in: np.ndarray | None = None
    if size_plan.resized:
        # The focus point and mask refer to the input: check them at its size, then scale them.
        if focus.kind == "point":
            check_point(focus.x, focus.y, *photo.size)
        if focus.kind == "mask":
            focus_mask_in = load_focus_mask(focus, *photo.size)
        t0 = time.perf_counter()
        pw, ph = size_plan.processed_size
        rgb = processing.resize_rgb(photo.rgb, pw, ph)
        photo = Photo(rgb=rgb, key=f"{photo.key}@{pw}x{ph}", messages=[], name=photo.name)
        if focus.kind == "point":
            px, py = processing.scale_point(focus.x, focus.y, size_plan)
            focus = Focus(kind="point", x=px, y=py, parity=focus.parity)
        if focus_mask_in is not None:
            focus_mask_in = processing.resize_mask(focus_mask_in, pw, ph).astype(np.float32)
        timings["resize"] = time.perf_counter() - t0
        messages.append(
            f"Processed at {pw}x{ph} (input {size_plan.input_size[0]}x{size_plan.input_size[1]}, "
            f"long side capped at {max_side} px)"
            + ("; result resized back to the input size." if match_input_size else ".")
        )
    k_run = processing.k_for_processing(k_user, size_plan, k_units)
    if k_run != k_user:
        settings = replace(settings, k=k_run)
        messages.append(f"K {k_user:g} (input pixels) is K {k_run:.3g} at the processed size.")
    w, h = photo.size

    backend = get_backend(settings.backend)
    available = backend.availability(settings.backend_call_options())
    if not available.ok:
        raise MagicBokehError(f"backend {settings.backend!r} cannot run here: {available.reason}")

    # 2. Disparity (cached: changing K or focus never recomputes it).
    seed = check_point(focus.x, focus.y, w, h) if focus.kind == "point" else None
    subject = focus_mask_in if size_plan.resized else (load_focus_mask(focus, w, h) if focus.kind == "mask" else None)
    t0 = time.perf_counter()
    depth_result = resolve_disparity(
        photo, depth, depth_is_depth=depth_is_depth, seed_xy=seed, subject_mask=subject,
        progress=progress, depth_input_size=depth_input_size, depth_device=depth_device,
    )
    timings["depth"] = time.perf_counter() - t0
    messages.extend(depth_result.messages)
    if depth_result.approximate and not depth_result.messages:
        messages.append(f"Using {depth_mod.APPROXIMATE_LABEL}.")
    disparity = depth_result.disparity

    # 3-4. Focus, defocus map and in-focus mask (official formulas).
    focus_disparity, focus_point = resolve_focus(focus, disparity, mask=subject)
    defocus = defocus_map(disparity, focus_disparity, settings.k, focal_range=settings.focal_range)
    in_focus = in_focus_mask(defocus)

    # 5. Backend.
    t0 = time.perf_counter()
    out = backend.render(
        photo.rgb,
        disparity,
        focus_disparity,
        settings.k,
        options=settings.backend_call_options(),
        image_key=photo.key,
        progress=progress,
    )
    timings["render"] = time.perf_counter() - t0
    for stage, seconds in out.timings.items():
        timings[f"render.{stage}"] = seconds
    messages.extend(out.messages)
    if out.defocus is not None:  # report the maps the backend really used
        defocus, in_focus = out.defocus, in_focus_mask(out.defocus)
    if out.focus_disparity is not None:
        focus_disparity = float(out.focus_disparity)
    if out.image.shape != photo.rgb.shape:
        raise MagicBokehError(
            f"backend {settings.backend!r} returned {out.image.shape} for a {photo.rgb.shape} photo."
        )
    result_image = out.image
    if size_plan.resized and match_input_size:  # back to the input's size (image and maps)
        t0 = time.perf_counter()
        iw, ih = size_plan.input_size
        result_image = processing.resize_rgb(result_image, iw, ih)
        disparity = processing.resize_scalar_map(disparity, iw, ih)
        defocus = processing.resize_scalar_map(defocus, iw, ih)
        in_focus = processing.resize_mask(in_focus, iw, ih)
        if focus_point is not None and focus.kind == "point":
            focus_point = check_point(focus_x_in, focus_y_in, iw, ih)
        photo = input_photo
        timings["resize"] = timings.get("resize", 0.0) + time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return RenderResult(
        image=result_image,
        photo=photo,
        disparity=disparity,
        defocus=defocus,
        in_focus=in_focus,
        focus_disparity=focus_disparity,
        focus_point=focus_point,
        settings=settings,
        backend=settings.backend,
        depth_source=depth_result.source,
        approximate_depth=depth_result.approximate,
        timings=timings,
        messages=messages,
        processed_size=size_plan.processed_size,
        k_user=k_user,
        input_size=size_plan.input_size,
    )
