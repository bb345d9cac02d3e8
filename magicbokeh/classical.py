"""The ``classical`` backend: the weight-free physically based lens-blur renderer."""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from .apertures import make_aperture
from .backends import Availability, Backend, BackendResult, ProgressCallback
from .lens_blur import render_lens_blur
from .subject.defocus import SUBJECT_WEIGHT_OPTION, weighted_disparity


class ClassicalBackend(Backend):
    """Layered, occlusion-aware lens blur in linear light; runs anywhere, no weights."""

    name = "classical"
    label = "Classical lens blur (no weights)"
    OPTIONS = {
        "focal_range": "disparity width around the focus kept sharp, [0, 1]",
        "aperture": "circle | polygon",
        "blades": "polygon blade count, 3-12",
        "rotation_deg": "polygon rotation, degrees",
        "highlight_boost": "brighten out-of-focus highlights (BokehMe style)",
        SUBJECT_WEIGHT_OPTION: "(H, W) CoC weight, 0 on a subject kept sharp (set by the core)",
    }

    def availability(self, options: Mapping[str, Any] | None = None) -> Availability:
        return Availability(True, "CPU, no weights needed")

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
        t0 = time.perf_counter()
        aperture = make_aperture(
            options.get("aperture", "circle"),
            blades=int(options.get("blades", 6)),
            rotation_deg=float(options.get("rotation_deg", 0.0)),
        )
        # Keep the subject sharp (our extension): its CoC is the official one times the subject weight.
        focal_range = float(options.get("focal_range", 0.0))
        disparity = weighted_disparity(disparity, focus_disparity, options.get(SUBJECT_WEIGHT_OPTION),
                                       focal_range=focal_range)
        out = render_lens_blur(
            image,
            disparity,
            focus_disparity,
            k,
            aperture=aperture,
            focal_range=focal_range,
            highlight_boost=bool(options.get("highlight_boost", False)),
            progress=progress,
        )
        return BackendResult(out, [f"classical renderer, {aperture.describe()} aperture"], {"lens_blur": time.perf_counter() - t0})
