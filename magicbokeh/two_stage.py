"""The ``two-stage`` backend: MagicBokeh restoration only (K = 0), then the classical lens blur.

This is the SR -> bokeh pipeline that the paper compares the joint model against; having it as a
backend lets the app and the CLI show joint vs two-stage side by side with no special casing.

By default the blur uses the input's disparity, the same map the joint model sees. Published
two-stage baselines (restore, then estimate depth, then render) estimate depth on the restored
photo instead; the backend option ``restored_depth`` does that (see :data:`TwoStageBackend.OPTIONS`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from .backends import Availability, Backend, BackendResult, ProgressCallback, get_backend
from .errors import MagicBokehError
from .subject.defocus import SUBJECT_WEIGHT_OPTION

#: Backend option: re-estimate disparity on the restored photo (None = reuse the input's).
RESTORED_DEPTH = "restored_depth"
#: Focal-plane band on the input's disparity: one 8-bit step, widened to the nearest 1 % of pixels.
FOCUS_BAND_MIN = 1.0 / 255.0
FOCUS_BAND_QUANTILE = 0.01

DisparityEstimator = Callable[[np.ndarray], np.ndarray]


def transfer_focus(old_disparity: np.ndarray, new_disparity: np.ndarray, focus_disparity: float) -> float:
    """The focus on ``new_disparity`` that keeps the same surface sharp as ``focus_disparity`` on ``old``.

    The surface in focus is the set of pixels whose old disparity lies within
    ``max(1/255, 1 % quantile of |old - focus|)`` of the focus (at least 1 % of the image, so the
    median is stable); the new focus is the median of the new disparity over those pixels. Works
    the same for point, mask, value and automatic focus, which all end as a disparity value.

    Args:
        old_disparity, new_disparity: (H, W) disparity in [0, 1], 1 = nearest, same shape.
        focus_disparity: focal plane on ``old_disparity``, in [0, 1].

    Returns:
        Focus disparity on ``new_disparity``, in its range.
    """
    old = np.asarray(old_disparity, np.float32)
    new = np.asarray(new_disparity, np.float32)
    if old.shape != new.shape:
        raise MagicBokehError(f"disparity maps differ in shape: {old.shape} vs {new.shape}.")
    gap = np.abs(old - np.float32(focus_disparity))
    band = max(FOCUS_BAND_MIN, float(np.quantile(gap, FOCUS_BAND_QUANTILE)))
    return float(np.median(new[gap <= band]))


def _estimator_for(spec: Any) -> tuple[DisparityEstimator, str]:
    """(estimator, label) for a ``restored_depth`` value: a depth-model spec or a callable."""
    if callable(spec):
        return spec, getattr(spec, "label", getattr(spec, "__name__", "custom estimator"))
    from .depth import choose_depth_model, get_estimator

    source, _ = choose_depth_model(None if str(spec) == "auto" else str(spec))
    estimator = get_estimator(source)
    reason = estimator.unavailable_reason()
    if reason:
        raise MagicBokehError(f"two-stage {RESTORED_DEPTH}={spec}: {reason}")
    return estimator, estimator.label


def _restored_disparity(estimator: DisparityEstimator, restored: np.ndarray) -> np.ndarray:
    """The estimator's disparity for the restored photo, min-max normalised to [0, 1], checked."""
    from .focus import normalise_disparity

    out = np.asarray(estimator(restored), np.float32)
    if out.shape != restored.shape[:2]:
        raise MagicBokehError(
            f"the {RESTORED_DEPTH} estimator returned {out.shape} for a {restored.shape[:2]} photo; "
            "expected one disparity per pixel."
        )
    return normalise_disparity(out)


class TwoStageBackend(Backend):
    """MagicBokeh with K = 0 (restoration), followed by the classical renderer at the requested K."""

    name = "two-stage"
    label = "Two-stage: MagicBokeh restoration, then classical blur"
    #: Options of this backend; the MagicBokeh and classical options pass through to each stage.
    OPTIONS: dict[str, str] = {
        RESTORED_DEPTH: "None (default): blur with the input's disparity, the map the joint model sees. "
        "A depth-model spec (auto, dadepth, small, base, large, a hub id, a folder, a .pth) or a "
        "callable (H, W, 3) float RGB -> (H, W) disparity: estimate disparity again on the restored "
        "photo and blur with it, as published two-stage baselines do; the focus follows the surface "
        "that was in focus on the input's map (transfer_focus).",
    }

    def availability(self, options: Mapping[str, Any] | None = None) -> Availability:
        base = get_backend("magicbokeh").availability(options)
        spec = (options or {}).get(RESTORED_DEPTH)
        if not base.ok or not spec or callable(spec):
            return base
        try:
            _estimator_for(spec)
        except MagicBokehError as exc:
            return Availability(False, str(exc))
        return base

    def render(
        self,
        image: np.ndarray,
        disparity: np.ndarray,
        focus_disparity: float,
        k: float,
        *,
        options: Mapping[str, Any],
        image_key: str,
        progress: ProgressCallback | None = None,
    ) -> BackendResult:
        spec = options.get(RESTORED_DEPTH)
        resolved = _estimator_for(spec) if spec else None  # fail before the slow restoration

        def restore_progress(fraction: float, stage: str) -> None:
            if progress:
                progress(0.9 * fraction, f"restoration: {stage}")

        t0 = time.perf_counter()
        restored = get_backend("magicbokeh").render(
            image, disparity, focus_disparity, 0.0, options=options, image_key=image_key,
            progress=restore_progress,
        )
        t1 = time.perf_counter()
        timings = {f"restore.{key}": v for key, v in restored.timings.items()}
        timings["restore"] = t1 - t0
        messages = ["two-stage: MagicBokeh K=0 restoration", *restored.messages]
        blur_disparity, blur_focus, defocus = disparity, focus_disparity, None
        if resolved is not None:
            if progress:
                progress(0.9, "depth of the restored photo")
            estimate, label = resolved
            blur_disparity = _restored_disparity(estimate, restored.image)
            blur_focus = transfer_focus(disparity, blur_disparity, focus_disparity)
            t2 = time.perf_counter()
            timings["restored_depth"] = t2 - t1
            t1 = t2
            messages.append(
                f"two-stage: depth re-estimated on the restored photo ({label}); focus disparity "
                f"{focus_disparity:.3f} on the input's map -> {blur_focus:.3f}"
            )
            from .focus import defocus_map

            defocus = defocus_map(blur_disparity, blur_focus, k, focal_range=float(options.get("focal_range", 0.0)))
            weight = options.get(SUBJECT_WEIGHT_OPTION)  # a subject kept sharp stays sharp
            defocus = defocus if weight is None else (defocus * weight).astype(np.float32)
        blurred = get_backend("classical").render(
            restored.image, blur_disparity, blur_focus, k, options=options, image_key=image_key,
        )
        if progress:
            progress(1.0, "lens blur")
        timings["lens_blur"] = time.perf_counter() - t1
        return BackendResult(
            blurred.image, [*messages, *blurred.messages], timings,
            focus_disparity=None if resolved is None else blur_focus, defocus=defocus,
            disparity=None if resolved is None else blur_disparity,
            depth_source=None if resolved is None else f"{resolved[1]}, estimated on the restored photo",
        )
