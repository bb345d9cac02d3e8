"""Depth estimators: the Depth Anything V2 model behind a spec, loaded once per process, and the
per-photo cache of disparity maps.

Every estimator returns normalised disparity, (H, W) float32 in [0, 1] with 1 = nearest, at the
photo's size. Models load lazily through the Hugging Face cache (honouring ``HF_HOME`` and
``HF_HUB_OFFLINE``), never at import time, and never block an offline machine (see :mod:`hub`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..lru import LruCache
from .. import hub
from ..errors import MagicBokehError
from ..focus import normalise_disparity
from .depth_anything import DEFAULT_INPUT_SIZE
from .sources import DEPTH_MODEL_LICENCES, checkpoint_hub_file, choose_depth_model, describe_source, is_checkpoint_file

logger = logging.getLogger(__name__)


@dataclass
class DepthResult:
    """Disparity (H, W) float32 in [0, 1], 1 = nearest, with where it came from."""

    disparity: np.ndarray
    source: str
    approximate: bool = False
    messages: tuple[str, ...] = ()


class DepthAnythingEstimator:
    """A Depth Anything V2 model (hub id, folder, DA depth or ``.pth``), loaded once, official pipeline.

    Runs :func:`magicbokeh.depth.depth_anything.predict_disparity`: the official resize rule, the
    upstream position-embedding interpolation, bilinear resize back, then min-max normalisation.
    """

    def __init__(self, source: str, *, device: str | None = None,
                 input_size: int = DEFAULT_INPUT_SIZE) -> None:
        self.source = source
        self.device = device  # None: MAGICBOKEH_DEVICE, else CUDA when available, read at load time
        self.input_size = int(input_size)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return describe_source(self.source)

    def unavailable_reason(self) -> str | None:
        """Why the model cannot be loaded right now (no download attempted), or None."""
        if self._model is not None or hub.is_local_source(self.source):
            return None
        if self.source.startswith((".", "/", "~", "\\")):
            return f"depth model {self.source} not found: no such file or folder."
        if is_checkpoint_file(self.source):
            repo, filename = checkpoint_hub_file(self.source)
            spec = f"{repo}/{filename}" if filename else self.source
            if filename and (hub.cached_file(repo, filename) is not None or hub.hub_reachable()):
                return None
            return hub.missing_weights_message(
                "DA depth", spec, hint="pass a local DAdepth.pth (--depth-model PATH), converted once on first use",
            )
        if hub.cached_file(self.source, "config.json") is not None:
            return None
        if hub.hub_reachable():
            return None
        return hub.missing_weights_message(
            "Depth Anything V2", self.source, hint="supply a disparity map (CLI: --depth PATH; app: Advanced)"
        )

    def _load(self) -> None:
        if self._model is not None:
            return
        reason = self.unavailable_reason()
        if reason:
            raise MagicBokehError(reason)
        try:
            import torch
        except ImportError as exc:
            raise MagicBokehError(
                f"Depth Anything needs torch and transformers ({exc}); pip install -r requirements.txt"
            ) from exc
        from .depth_anything import load_depth_model

        device = self.device or os.environ.get("MAGICBOKEH_DEVICE") or "auto"
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        local_only = hub.is_local_source(self.source) or not hub.hub_reachable()
        t0 = time.perf_counter()
        self._model = load_depth_model(self.source, device=self.device, local_files_only=local_only)
        logger.info("loaded %s in %.1f s", self.source, time.perf_counter() - t0)

    @property
    def model(self) -> Any:
        """The loaded transformers model (loads on first access)."""
        with self._lock:
            self._load()
            return self._model

    def predict_raw(self, rgb: np.ndarray) -> np.ndarray:
        """Raw relative disparity (H, W) float32 (larger = nearer), not normalised."""
        from .depth_anything import predict_disparity

        with self._lock:
            self._load()
            return predict_disparity(self._model, rgb, input_size=self.input_size)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Disparity (H, W) float32 in [0, 1], 1 = nearest, for a float RGB photo."""
        # Relative models predict inverse depth (larger = nearer): normalise per image.
        return normalise_disparity(self.predict_raw(rgb))


#: Process-wide LRU of disparity maps keyed by (photo hash, depth source).
DepthCache = LruCache


DEPTH_CACHE: LruCache[DepthResult] = LruCache(16)
_ESTIMATORS: dict[tuple[str, int, str | None], DepthAnythingEstimator] = {}
_ESTIMATORS_LOCK = threading.Lock()


def get_estimator(
    source: str | None = None, *, device: str | None = None, input_size: int = DEFAULT_INPUT_SIZE
) -> DepthAnythingEstimator:
    """The process-wide estimator for a depth spec (created once, loaded on first use).

    Args:
        source: a name in :data:`DEPTH_MODELS` (``dadepth``, ``small``, ``base``, ``large``), a hub
            id, a transformers folder, an upstream ``.pth``, or None/``"auto"`` (see
            :func:`choose_depth_model`).
        input_size: the network's shorter-side target in pixels (multiple of 14; official 518).
    """
    resolved = choose_depth_model(source)[0]
    key = (resolved, int(input_size), device)
    with _ESTIMATORS_LOCK:
        if key not in _ESTIMATORS:
            _ESTIMATORS[key] = DepthAnythingEstimator(resolved, device=device, input_size=input_size)
        return _ESTIMATORS[key]


def depth_status(source: str | None = None) -> tuple[bool, str]:
    """(available, sentence) for a depth model, without downloading or loading anything."""
    est = get_estimator(source)
    reason = est.unavailable_reason()
    if reason:
        return False, reason + " Using approximate depth."
    licence = DEPTH_MODEL_LICENCES.get(est.source, "see the model card")
    return True, f"Depth model: {est.label} ({licence})."
