"""What a render is asked and what it gives back: settings, focus, the request, the result.

A :class:`RenderRequest` is the one road into the core: the app (through
:mod:`magicbokeh.zerogpu`), the CLI and sweeps build one and hand it to
:func:`magicbokeh.pipeline.run`. Everything here is a plain picklable dataclass (a request crosses
into the ZeroGPU worker) and imports neither torch nor gradio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from .errors import MagicBokehError
from .focus import check_k
from .images import Photo
from .processing import KUnits
from .depth.depth_anything import DEFAULT_INPUT_SIZE
from .settings import BLADES_RANGE, FOCAL_RANGE_MAX, K_DEFAULT

APERTURE_SHAPES = ("circle", "polygon")


def _finite(value: Any, what: str) -> float:
    """``value`` as a finite float, else MagicBokehError naming ``what`` (NaN/inf never reach a renderer)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MagicBokehError(f"{what} must be a number; got {value!r}.") from None
    if not np.isfinite(number):
        raise MagicBokehError(f"{what} must be a finite number; got {number!r}.")
    return number


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
        if not (0.0 <= _finite(self.focal_range, "focal range") <= FOCAL_RANGE_MAX):
            raise MagicBokehError(
                f"focal range {self.focal_range:g} is outside [0, {FOCAL_RANGE_MAX:g}] (disparity units)."
            )
        if self.aperture not in APERTURE_SHAPES:
            raise MagicBokehError(
                f"unknown aperture shape {self.aperture!r}; choose {' or '.join(APERTURE_SHAPES)}."
            )
        if not (BLADES_RANGE[0] <= int(self.blades) <= BLADES_RANGE[1]):
            raise MagicBokehError(f"blades={self.blades} is outside [{BLADES_RANGE[0]}, {BLADES_RANGE[1]}].")
        _finite(self.rotation_deg, "aperture rotation (degrees)")
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
    prompts: tuple[tuple[float, ...], ...] | None = None

    @classmethod
    def point(cls, x: float, y: float, *, parity: bool = False) -> "Focus":
        """Focus at pixel (x = column, y = row) of the upright photo; ``parity`` = official demo."""
        return cls(kind="point", x=_finite(x, "focus x"), y=_finite(y, "focus y"), parity=parity)

    @classmethod
    def mask(cls, mask: Any, *, parity: bool = False) -> "Focus":
        """Focus on the median disparity under a subject mask (path or array, non-zero = subject)."""
        return cls(kind="mask", mask_source=mask, parity=parity)

    @classmethod
    def points(cls, points: Any, *, parity: bool = False) -> "Focus":
        """Focus on the subject under prompt points ``[x, y, label]`` (input pixels; label 1 = the
        subject, 0 = not): Segment Anything, or GrabCut without its weights (magicbokeh.subject)."""
        try:  # numbers here; shape, labels and bounds are checked against the photo (subject.masks)
            pts = tuple(tuple(_finite(v, f"point {i + 1}") for v in p) for i, p in enumerate(points))
        except TypeError:
            raise MagicBokehError(f"points must be a list of [x, y, label]; got {points!r}.") from None
        if not pts:
            raise MagicBokehError("give at least one point [x, y, label] on the subject.")
        return cls(kind="points", prompts=pts, parity=parity)

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
        if self.kind == "points":
            return f"subject under {len(self.prompts or ())} point(s)"
        if self.kind == "disparity":
            return f"disparity {self.value:.3f}"
        return "automatic (nearest large region)"


@dataclass(frozen=True)
class RenderRequest:
    """One photo to render and how: the arguments of :func:`magicbokeh.pipeline.render`.

    Attributes:
        image: the photo (path, bytes, PIL image, float/uint8 array or a decoded ``Photo``).
        depth: depth spec (see :func:`magicbokeh.pipeline.resolve_disparity`).
        depth_is_depth: a supplied map holds depth (far = large) rather than disparity.
        focus: where to focus (None = automatic).
        settings: blur strength, backend and optics (None = defaults).
        depth_input_size: the depth network's shorter-side input in pixels (official 518).
        max_side: processing size, the long side in pixels (None = the original size).
        match_input_size: resize a downscaled result back to the input's size.
        k_units: ``"processed"`` (official/CLI) or ``"input"`` (the app) pixels for K.
        depth_device: device of the depth network (None = the estimator's default).
        depth_model: the model ``depth="auto"`` uses (a front end's ``--depth-model``); None =
            ``$MAGICBOKEH_DEPTH_MODEL``, then the automatic choice.
        subject: keep the whole subject (the focus mask, points or salient mask) sharp (our extension).
        saliency_model: LDF weights for automatic focus (None = ``$MAGICBOKEH_SALIENCY_MODEL``).
        sam_model: Segment Anything checkpoint for point prompts (None = the default).
    """

    image: Any
    depth: Any = "auto"
    depth_is_depth: bool = False
    focus: Focus | None = None
    settings: RenderSettings | None = None
    depth_input_size: int = DEFAULT_INPUT_SIZE
    max_side: int | None = None
    match_input_size: bool = True
    k_units: KUnits = "processed"
    depth_device: str | None = None
    depth_model: str | None = None
    subject: bool = False
    saliency_model: str | None = None
    sam_model: str | None = None

    def render_kwargs(self) -> dict[str, Any]:
        """Every field but ``image`` as keyword arguments of :func:`magicbokeh.pipeline.render`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}


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
        subject_mask: (H, W) uint8 0..255, the subject mask the focus used (given, clicked or
            salient), at the result's size; None without one.
        focus_report: ``focus_rule`` (which focus rule was used), its description and, with a
            subject mask, ``subject`` (its source, model, points, whether it was kept sharp).
        embedded_depth: the depth the photo file carries (``EmbeddedDepth.summary()`` plus
            ``depth_used``/``focus_used``), ``{"error": ...}`` when it is malformed, else None.
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
    embedded_depth: dict[str, Any] | None = None
    subject_mask: np.ndarray | None = None
    focus_report: dict[str, Any] | None = None

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
        if self.embedded_depth is not None:
            out["embedded_depth"] = self.embedded_depth
        if self.focus_report:
            out.update(self.focus_report)
        return out
