"""What the app's controls say, as one object, and how it becomes core requests.

The Gradio layer (:mod:`magicbokeh.ui`) reads its controls into one :class:`AppSettings`;
everything else (focus, render settings, depth spec, processing size, the
:class:`~magicbokeh.request.RenderRequest` of each backend) is decided here, without Gradio.
Model sources and the device come from :class:`ModelSources`: command-line flags over environment
variables, held in an object that is passed along (the environment is only read, never written).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from . import app_support, processing
from .errors import MagicBokehError
from .request import Focus, RenderRequest, RenderSettings

#: Model sources and device: flag > environment variable > the backend's own default.
SOURCE_ENV = {
    "depth_model": "MAGICBOKEH_DEPTH_MODEL",
    "base": "MAGICBOKEH_BASE",
    "checkpoint": "MAGICBOKEH_CHECKPOINT",
    "device": "MAGICBOKEH_DEVICE",
    "saliency_model": "MAGICBOKEH_SALIENCY_MODEL",
    "sam_model": "MAGICBOKEH_SAM_MODEL",
}


@dataclass(frozen=True)
class ModelSources:
    """Where the models come from and where they run (``None`` = the backend's default)."""

    depth_model: str | None = None
    base: str | None = None
    checkpoint: str | None = None
    device: str | None = None
    saliency_model: str | None = None
    sam_model: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags: str | None) -> "ModelSources":
        """The environment variables of :data:`SOURCE_ENV`, overridden by non-empty ``flags``."""
        env = os.environ if environ is None else environ
        values = {key: (env.get(name) or None) for key, name in SOURCE_ENV.items()}
        values.update({key: value for key, value in flags.items() if value})
        return cls(**values)

    def as_dict(self) -> dict[str, str | None]:
        return {key: getattr(self, key) for key in SOURCE_ENV}

    def backend_options(self, backend: str) -> dict[str, Any]:
        """Options handed to a backend: the model sources and device for the diffusion backends."""
        if backend == "classical":
            return {}
        return {key: getattr(self, key) for key in ("base", "checkpoint", "device") if getattr(self, key)}


def processing_size(choice: Any, backend: str) -> int | None:
    """The long side (px) to process at: "auto"/None = the backend's default, "original"/0 = none."""
    if choice is None or choice == "" or choice == "auto":
        return processing.default_max_side(backend)
    if choice == "original":
        return None
    return processing.check_max_side(choice)


def disparity_path(disparity_map: Any) -> str | None:
    """The uploaded map's path (a path, a FileData-like dict, or nothing)."""
    if disparity_map is None or disparity_map == "":
        return None
    if isinstance(disparity_map, dict):
        disparity_map = disparity_map.get("path")
    return str(disparity_map)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


@dataclass
class AppSettings:
    """Every control of the app, as the user left it (plain values; ``None`` = empty control).

    Attributes:
        image, state: the photo component's value and the click state (original + marked copy).
        focus_x, focus_y: the focus pixel (both empty = automatic focus).
        k: blur strength in [0, 32], in pixels of the input photo.
        backends: the backends to render with (several = side by side).
        disparity_map, disparity_is_depth: an uploaded map and whether it holds depth.
        focal_range, aperture, blades, rotation_deg, highlight_boost: optics.
        focus_parity: the official single-pixel focus rule.
        depth_model: the depth menu's value (``auto``, a model name, ``approximate``, ``uploaded``).
        simulate_lq, lq_preset, lq_seed: render a simulated low-quality capture of the photo.
        max_side, match_input_size: processing size and whether the result returns to the input's size.
        sweep_kind, sweep_frames, sweep_k_max: the sweep panel.
        sweep_k_multiples: aperture sweep by multiples of K (text such as "1,2,3"; empty = K from 0
            to ``sweep_k_max``); when set, K is the base and frames/K max are not used.
        restored_depth: two-stage backend: estimate depth again on the restored photo.
        points: subject prompts ``[x, y, label]`` in the photo's pixels (label 1 = subject, 0 = not);
            used for the focus while focus x/y are empty.
        subject: keep the whole subject sharp, when there is a subject mask (points, or automatic
            focus with a saliency model).
    """

    image: Any = None
    state: dict | None = None
    focus_x: float | None = None
    focus_y: float | None = None
    k: float | None = 16.0
    backends: list[str] = field(default_factory=lambda: ["classical"])
    disparity_map: Any = None
    disparity_is_depth: bool = False
    focal_range: float | None = 0.0
    aperture: str | None = "circle"
    blades: float | None = 6
    rotation_deg: float | None = 0.0
    highlight_boost: bool = False
    focus_parity: bool = False
    depth_model: str | None = "auto"
    simulate_lq: bool = False
    lq_preset: str | None = "realesrgan"
    lq_seed: float | None = 0
    max_side: Any = "auto"
    match_input_size: bool | None = True
    sweep_kind: str = "aperture"
    sweep_frames: float = 8
    sweep_k_max: float = 32.0
    sweep_k_multiples: str | None = None
    restored_depth: bool = False
    points: list | None = None
    subject: bool = False

    def focus(self) -> Focus:
        """Focus.point for a clicked or typed pixel, else Focus.points for subject prompts, else
        Focus.auto()."""
        if _missing(self.focus_x) and _missing(self.focus_y):
            return Focus.points(self.points, parity=bool(self.focus_parity)) if self.points else Focus.auto()
        if _missing(self.focus_x) or _missing(self.focus_y):
            raise MagicBokehError("set both focus x and focus y (or clear both for automatic focus).")
        return Focus.point(self.focus_x, self.focus_y, parity=bool(self.focus_parity))

    def render_settings(self, backend: str, sources: ModelSources) -> RenderSettings:
        """The core's settings for one backend (checked by the core when it renders)."""
        if self.k is None:
            raise MagicBokehError("blur strength K must be a number in [0, 32].")
        return RenderSettings(
            k=float(self.k),
            backend=backend,
            focal_range=float(self.focal_range or 0.0),
            aperture=self.aperture or "circle",
            blades=int(self.blades if self.blades is not None else 6),
            rotation_deg=float(self.rotation_deg or 0.0),
            highlight_boost=bool(self.highlight_boost),
            backend_options={**sources.backend_options(backend), **self.restored_depth_option(backend, sources)},
        )

    def restored_depth_option(self, backend: str, sources: ModelSources) -> dict[str, str]:
        """The two-stage backend's ``restored_depth`` option when asked for: the depth menu's model
        if it names one, else the configured ``--depth-model``, else automatic."""
        if backend != "two-stage" or not self.restored_depth:
            return {}
        from .depth import DEPTH_MODELS
        from .two_stage import RESTORED_DEPTH

        model = self.depth_model if self.depth_model in DEPTH_MODELS else (sources.depth_model or "auto")
        return {RESTORED_DEPTH: model}

    def k_multiples(self) -> list[float] | None:
        """The aperture sweep's multiples of the base K (None: empty field, or a focus sweep)."""
        text = (self.sweep_k_multiples or "").strip()
        if not text or self.sweep_kind != "aperture":
            return None
        from .sweep import parse_k_multiples

        return parse_k_multiples(text)

    def depth_spec(self) -> str:
        """The core's ``depth`` argument for the menu value and the uploaded map."""
        return app_support.depth_spec(self.depth_model, disparity_path(self.disparity_map))

    def source_photo(self, original: Any) -> Any:
        """The photo to render: the upload itself, or its simulated low-quality capture."""
        if not self.simulate_lq:
            return original
        return app_support.simulate_low_quality(original, preset=self.lq_preset or "realesrgan",
                                                seed=self.lq_seed)

    def keep_subject(self, sources: ModelSources, focus: Focus) -> bool:
        """Whether to keep the subject sharp: asked for, and a mask exists (points, or automatic
        focus with a saliency model); a pixel focus has no subject, so the option does not apply."""
        if not self.subject:
            return False
        if focus.kind == "points":
            return True
        from .subject.ldf import resolve_saliency_model

        return focus.kind == "auto" and resolve_saliency_model(sources.saliency_model) is not None

    def request(self, source: Any, backend: str, sources: ModelSources) -> RenderRequest:
        """One backend's render request: K in input pixels, the chosen processing size."""
        focus = self.focus()
        return RenderRequest(
            source,
            depth=self.depth_spec(),
            depth_is_depth=bool(self.disparity_is_depth),
            focus=focus,
            settings=self.render_settings(backend, sources),
            max_side=processing_size(self.max_side, backend),
            match_input_size=bool(self.match_input_size) if self.match_input_size is not None else True,
            k_units="input",
            depth_device=sources.device,
            depth_model=sources.depth_model,
            subject=self.keep_subject(sources, focus),
            saliency_model=sources.saliency_model,
            sam_model=sources.sam_model,
        )

    def sweep_request(self, source: Any, backend: str, sources: ModelSources) -> RenderRequest:
        """The request every sweep frame starts from (at the photo's own size, K in its pixels)."""
        request = self.request(source, backend, sources)
        # A focus sweep moves the focal plane, so no subject is held sharp in it.
        return replace(request, max_side=None, match_input_size=True, k_units="processed",
                       subject=request.subject and self.sweep_kind != "focus")
