"""Backend registry: callers ask for a backend by name and never import its module themselves.

A backend turns (photo, disparity, focus disparity, K, options) into a photo. ``classical`` is the
weight-free lens-blur renderer; ``magicbokeh`` is the one-step diffusion model. Backends are
imported lazily, so that ``import magicbokeh`` stays light and a backend whose packages are missing
only fails when it is asked for.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .errors import BackendUnavailable, MagicBokehError

#: progress(fraction in [0, 1], stage description)
ProgressCallback = Callable[[float, str], None]


@dataclass
class BackendResult:
    """What a backend returns.

    Attributes:
        image: (H, W, 3) float32 RGB in [0, 1], the input's size.
        messages: human-readable notes (device, precision, warnings).
        timings: seconds per stage.
        focus_disparity, defocus: set when the backend used values other than the core's (e.g.
            the official 8-bit quantised disparity), so the reported maps are what it really used.
        disparity, depth_source: set when the backend blurred with a disparity map of its own
            ((H, W) float32 in [0, 1], 1 = nearest; e.g. two-stage's depth of the restored photo)
            and where that map came from, so the reported map is the one used.
    """

    image: np.ndarray
    messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    focus_disparity: float | None = None
    defocus: np.ndarray | None = None
    disparity: np.ndarray | None = None
    depth_source: str | None = None


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here.

    ``reason`` says why not, or gives notes such as device and ETA; ``summary`` is a few words for
    menus (e.g. "CPU bf16, ~15 s per tile").
    """

    ok: bool
    reason: str = ""
    summary: str = ""


class Backend(ABC):
    """A renderer registered by name."""

    #: registry name, e.g. "classical"
    name: str = ""
    #: short label for menus, e.g. "Classical lens blur (no weights)"
    label: str = ""

    @abstractmethod
    def availability(self, options: Mapping[str, Any] | None = None) -> Availability:
        """Cheap check (no downloads, no model loading) of whether ``render`` can work here.

        ``options`` are the ones ``render`` would get (e.g. local weight paths); None = defaults.
        """

    @abstractmethod
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
        """Render one photo.

        Args:
            image: (H, W, 3) float32 RGB in [0, 1], upright.
            disparity: (H, W) float32 in [0, 1], 1 = nearest.
            focus_disparity: focal plane disparity in [0, 1].
            k: blur strength in [0, 32]; 0 = no blur.
            options: backend-specific options (see each backend's ``OPTIONS``).
            image_key: content hash of the photo, for per-image caches.
            progress: optional ``progress(fraction, stage)`` callback.
        """


# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "classical": "magicbokeh.classical:ClassicalBackend",
    "magicbokeh": "magicbokeh.diffusion.backend:MagicBokehBackend",
    "two-stage": "magicbokeh.two_stage:TwoStageBackend",
}
_INSTANCES: dict[str, Backend] = {}
_LOCK = threading.Lock()


def register_backend(name: str, spec: str | Callable[[], Backend]) -> None:
    """Register a backend under ``name``: a ``"module:Class"`` path or a zero-argument factory."""
    with _LOCK:
        _REGISTRY[name] = spec  # type: ignore[assignment]
        _INSTANCES.pop(name, None)


def backend_names() -> list[str]:
    """Registered backend names, in registration order."""
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The (process-wide, lazily created) backend registered under ``name``."""
    with _LOCK:
        if name in _INSTANCES:
            return _INSTANCES[name]
        if name not in _REGISTRY:
            raise MagicBokehError(
                f"unknown backend {name!r}; choose one of: {', '.join(_REGISTRY)}."
            )
        spec: Any = _REGISTRY[name]
        if callable(spec):
            backend = spec()
        else:
            module_name, _, cls_name = spec.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise BackendUnavailable(
                    f"backend {name!r} needs a package that is not installed ({exc}); "
                    "install the requirements: pip install -r requirements.txt"
                ) from exc
            backend = getattr(module, cls_name)()
        _INSTANCES[name] = backend
        return backend


def backend_availability(options: Mapping[str, Any] | None = None) -> dict[str, Availability]:
    """Availability of every registered backend, without loading any weights."""
    out: dict[str, Availability] = {}
    for name in backend_names():
        try:
            out[name] = get_backend(name).availability(options)
        except MagicBokehError as exc:
            out[name] = Availability(False, str(exc))
    return out
