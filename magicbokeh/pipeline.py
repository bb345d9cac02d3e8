"""The one inference core: photo + depth source + focus + K -> rendered photo and its maps.

The app (through :mod:`magicbokeh.zerogpu`), the CLI and sweeps hand a
:class:`~magicbokeh.request.RenderRequest` to :func:`run`, which calls :func:`render`. Steps:
1 decode the photo, 2 get disparity (cached per photo and source), 3 resolve the focus,
4 build the defocus map and in-focus mask, 5 run the chosen backend, 6 return a RenderResult.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from . import depth as depth_mod
from . import processing
from .backends import ProgressCallback, get_backend
from .depth import DEFAULT_INPUT_SIZE
from .errors import MagicBokehError
from .focus import (
    check_point,
    focus_from_mask,
    focus_from_point,
    in_focus_mask,
)
from .depth import from_photo
from .images import Photo, content_key, disparity_from_map, load_map
from .notes import warning
from .processing import KUnits
from .request import APERTURE_SHAPES, Focus, RenderRequest, RenderResult, RenderSettings
from .subject import render_focus

logger = logging.getLogger(__name__)

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
    depth_model: str | None = None,
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
        depth_model: the model ``"auto"`` uses (None: ``$MAGICBOKEH_DEPTH_MODEL``, then automatic).
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
        model_source, why = depth_mod.choose_depth_model(None if depth == "auto" else str(depth),
                                                         configured=depth_model, device=depth_device)
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
        messages.append(warning(reason + " Using approximate depth."))

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


def photo_disparity(photo: Photo, depth: Any = "auto", **kwargs: Any) -> depth_mod.DepthResult:
    """Disparity for a decoded photo: its own map when ``depth`` is ``"embedded"``, or ``"auto"``
    and the photo carries one (:mod:`magicbokeh.depth.from_photo`); else :func:`resolve_disparity`
    (``kwargs`` are its options). Under ``"auto"`` a file whose depth is malformed falls back to
    the next source with a warning."""
    if from_photo.uses_embedded(photo, depth):
        return from_photo.embedded_depth_result(photo)
    result = resolve_disparity(photo, depth, **kwargs)
    note = from_photo.fallback_note(photo, depth)
    return dataclasses.replace(result, messages=(note, *result.messages)) if note else result


def _photo_focus(photo: Photo, focus: Focus, depth: Any) -> tuple[Focus, str | None]:
    """(focus, hint source): an automatic focus becomes the point where the camera focused when
    the photo records one (GFocus, EXIF SubjectArea); a click, a mask or a disparity always wins."""
    info = from_photo.embedded_of(photo)
    if focus.kind != "auto" or info is None:
        return focus, None
    point, source = from_photo.focus_hint(photo)
    if point is not None:
        return Focus.point(*point), source
    value = info.focus_disparity()
    if value is not None and info.focus_distance and from_photo.uses_embedded(photo, depth):
        return Focus.disparity(value), info.focus_source or "the photo"
    return focus, None


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


def check_backend(settings: RenderSettings) -> Any:
    """The backend of ``settings``, after checking that it can run here (else MagicBokehError)."""
    backend = get_backend(settings.backend)
    available = backend.availability(settings.backend_call_options())
    if not available.ok:
        raise MagicBokehError(f"backend {settings.backend!r} cannot run here: {available.reason}")
    return backend


def run(request: RenderRequest, progress: ProgressCallback | None = None) -> RenderResult:
    """Render one :class:`~magicbokeh.request.RenderRequest`: the road every caller takes."""
    return render(request.image, progress=progress, **request.render_kwargs())


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
    depth_model: str | None = None,
    subject: bool = False,
    saliency_model: str | None = None,
    sam_model: str | None = None,
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
        depth_model: the model ``depth="auto"`` uses (see :func:`resolve_disparity`).
        subject, saliency_model, sam_model: keep the subject sharp, the LDF weights of automatic
            focus, the SAM checkpoint of ``Focus.points`` (see :mod:`magicbokeh.subject.render_focus`).

    Raises:
        MagicBokehError: bad input or an unavailable backend, with a message saying what to do.
    """
    t_start = time.perf_counter()
    settings = (settings or RenderSettings()).checked()
    focus = focus or Focus.auto()
    timings: dict[str, float] = {}

    # 1. Decode, then (optionally) downscale to the processing size.
    t0 = time.perf_counter()
    photo = from_photo.open_photo(image)  # a phone photo brings its depth, original and focus hint
    timings["decode"] = time.perf_counter() - t0
    messages = list(photo.messages)
    focus, preset = _photo_focus(photo, focus, depth)
    focus, subject_plan = render_focus.prepare(photo, focus, subject=subject, saliency_model=saliency_model,
                                               sam_model=sam_model)  # clicks -> a subject mask
    focus_x_in, focus_y_in = focus.x, focus.y
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
        photo = from_photo.resized(photo, rgb, f"{photo.key}@{pw}x{ph}")
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

    backend = check_backend(settings)

    # 2. Disparity (cached: changing K or focus never recomputes it).
    seed = check_point(focus.x, focus.y, w, h) if focus.kind == "point" else None
    focus_mask = focus_mask_in if size_plan.resized else (load_focus_mask(focus, w, h) if focus.kind == "mask" else None)
    t0 = time.perf_counter()
    depth_result = photo_disparity(
        photo, depth, depth_is_depth=depth_is_depth, seed_xy=seed, subject_mask=focus_mask,
        progress=progress, depth_input_size=depth_input_size, depth_device=depth_device,
        depth_model=depth_model,
    )
    timings["depth"] = time.perf_counter() - t0
    messages.extend(depth_result.messages)
    if depth_result.approximate and not depth_result.messages:
        messages.append(warning(f"Using {depth_mod.APPROXIMATE_LABEL}."))
    disparity = depth_result.disparity

    # 3-4. Focus, defocus map and in-focus mask (official formulas).
    focus_disparity, focus_point = resolve_focus(focus, disparity, mask=focus_mask)
    embedded = from_photo.embedded_of(photo)
    depth_from_photo = embedded is not None and from_photo.uses_embedded(photo, depth)
    if preset is not None:
        exact = embedded.focus_disparity() if depth_from_photo and embedded.focus_distance else None
        if exact is not None:  # FocalDistance: the exact plane, not the map around a point
            focus_disparity = exact
        messages.append(from_photo.focus_note(embedded, focus_point, exact))
    focus_disparity, defocus, in_focus = render_focus.resolve(
        subject_plan, photo, disparity, focus, focus_disparity, focus_mask,
        k=settings.k,
        focal_range=settings.focal_range, camera_focus=preset is not None)
    messages.extend(subject_plan.messages)

    # 5. Backend.
    t0 = time.perf_counter()
    out = backend.render(
        photo.rgb,
        disparity,
        focus_disparity,
        settings.k,
        options={**settings.backend_call_options(), **subject_plan.backend_options()},
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
    depth_source = depth_result.source
    if out.disparity is not None:  # the backend blurred with a map of its own: report that one
        if out.disparity.shape != disparity.shape:
            raise MagicBokehError(f"backend {settings.backend!r} returned a {out.disparity.shape} disparity "
                                  f"map for a {disparity.shape} photo.")
        disparity = np.asarray(out.disparity, np.float32)
        depth_source = out.depth_source or depth_source
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
        depth_source=depth_source,
        approximate_depth=depth_result.approximate and out.disparity is None,
        timings=timings,
        messages=messages,
        processed_size=size_plan.processed_size,
        k_user=k_user,
        input_size=size_plan.input_size,
        embedded_depth=from_photo.report(photo, depth_used=depth_from_photo, focus_used=preset is not None),
        subject_mask=subject_plan.mask_at(result_image.shape[1], result_image.shape[0]),
        focus_report=subject_plan.report(),
    )


__all__ = [
    "APERTURE_SHAPES", "Focus", "RenderRequest", "RenderResult", "RenderSettings", "check_backend",
    "load_focus_mask", "photo_disparity", "render", "resolve_disparity", "resolve_focus", "run",
]
