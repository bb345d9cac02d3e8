"""The ``two-stage`` backend: MagicBokeh restoration only (K = 0), then the classical lens blur.

This is the SR -> bokeh pipeline that the paper compares the joint model against; having it as a
backend lets the app and the CLI show joint vs two-stage side by side with no special casing.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from .backends import Availability, Backend, BackendResult, ProgressCallback, get_backend


class TwoStageBackend(Backend):
    """MagicBokeh with K = 0 (restoration), followed by the classical renderer at the requested K."""

    name = "two-stage"
    label = "Two-stage: MagicBokeh restoration, then classical blur"

    def availability(self, options: Mapping[str, Any] | None = None) -> Availability:
        return get_backend("magicbokeh").availability(options)

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
        def restore_progress(fraction: float, stage: str) -> None:
            if progress:
                progress(0.9 * fraction, f"restoration: {stage}")

        t0 = time.perf_counter()
        restored = get_backend("magicbokeh").render(
            image, disparity, focus_disparity, 0.0, options=options, image_key=image_key,
            progress=restore_progress,
        )
        t1 = time.perf_counter()
        blurred = get_backend("classical").render(
            restored.image, disparity, focus_disparity, k, options=options, image_key=image_key,
        )
        if progress:
            progress(1.0, "lens blur")
        timings = {f"restore.{key}": v for key, v in restored.timings.items()}
        timings.update({"restore": t1 - t0, "lens_blur": time.perf_counter() - t1})
        return BackendResult(
            blurred.image, ["two-stage: MagicBokeh K=0 restoration", *restored.messages, *blurred.messages], timings
        )
