"""Depth sources: a user's map, Depth Anything V2 (transformers), or a weight-free approximation.

Every source returns normalised disparity, (H, W) float32 in [0, 1] with 1 = nearest, at the
photo's size. Models load lazily through the Hugging Face cache (honouring ``HF_HOME`` and
``HF_HUB_OFFLINE``), never at import time, and never block an offline machine (see :mod:`hub`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import hub
from .errors import MagicBokehError
from .focus import normalise_disparity

logger = logging.getLogger(__name__)

#: Apache-2.0; Base/Large are CC-BY-NC-4.0 (non-commercial).
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
DEPTH_MODEL_ENV = "MAGICBOKEH_DEPTH_MODEL"
DEPTH_MODEL_LICENCES = {
    "depth-anything/Depth-Anything-V2-Small-hf": "Apache-2.0",
    "depth-anything/Depth-Anything-V2-Base-hf": "CC-BY-NC-4.0",
    "depth-anything/Depth-Anything-V2-Large-hf": "CC-BY-NC-4.0",
}
APPROXIMATE_LABEL = "approximate depth (subject cut-out + ground-plane ramp, no model)"


@dataclass
class DepthResult:
    """Disparity (H, W) float32 in [0, 1], 1 = nearest, with where it came from."""

    disparity: np.ndarray
    source: str
    approximate: bool = False
    messages: tuple[str, ...] = ()


def depth_model_source(source: str | None = None) -> str:
    """Depth model id or folder: argument, then ``MAGICBOKEH_DEPTH_MODEL``, then the Small model."""
    return source or os.environ.get(DEPTH_MODEL_ENV) or DEFAULT_DEPTH_MODEL


class DepthAnythingEstimator:
    """Depth Anything V2 through transformers' ``AutoModelForDepthEstimation`` (loaded once)."""

    def __init__(self, source: str, *, device: str | None = None) -> None:
        self.source = source
        self.device = device  # None: MAGICBOKEH_DEVICE, else CUDA when available, read at load time
        self._model: Any = None
        self._processor: Any = None
        self._lock = threading.Lock()

    def unavailable_reason(self) -> str | None:
        """Why the model cannot be loaded right now (no download attempted), or None."""
        if hub.is_local_source(self.source) or self._model is not None:
            return None
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
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError as exc:
            raise MagicBokehError(
                f"Depth Anything needs torch and transformers ({exc}); pip install -r requirements.txt"
            ) from exc
        local_only = hub.is_local_source(self.source) or not hub.hub_reachable()
        t0 = time.perf_counter()
        try:
            processor = AutoImageProcessor.from_pretrained(self.source, local_files_only=local_only)
            model = AutoModelForDepthEstimation.from_pretrained(self.source, local_files_only=local_only)
        except (OSError, ValueError) as exc:
            raise MagicBokehError(f"cannot load depth model {self.source!r}: {exc}") from None
        device = self.device or os.environ.get("MAGICBOKEH_DEVICE") or "auto"
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self._model = model.to(self.device).eval()
        self._processor = processor
        self._torch = torch
        logger.info("loaded %s in %.1f s", self.source, time.perf_counter() - t0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Disparity (H, W) float32 in [0, 1], 1 = nearest, for a float RGB photo."""
        with self._lock:
            self._load()
            from PIL import Image

            h, w = rgb.shape[:2]
            pil = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
            inputs = self._processor(images=pil, return_tensors="pt").to(self.device)
            with self._torch.inference_mode():
                outputs = self._model(**inputs)
            post = self._processor.post_process_depth_estimation(outputs, target_sizes=[(h, w)])
            raw = post[0]["predicted_depth"].float().cpu().numpy()
        # Relative models predict inverse depth (larger = nearer): normalise per image.
        return normalise_disparity(raw)


def approximate_disparity(
    rgb: np.ndarray,
    seed_xy: tuple[int, int] | None = None,
    *,
    subject_mask: np.ndarray | None = None,
) -> np.ndarray:
    """A weight-free stand-in for depth, so click-to-focus stays useful with no model.

    The subject (``subject_mask`` > 0 when given, else the region around ``seed_xy`` — default the
    image centre — cut out with OpenCV GrabCut) is placed in front at disparity 0.9; the rest is a
    ground-plane ramp from 0.05 (top, far) to 0.6 (bottom, near). Always labelled approximate.
    """
    import cv2

    h, w = rgb.shape[:2]
    ramp = np.linspace(0.05, 0.6, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    if subject_mask is not None:
        return np.where(np.asarray(subject_mask) > 0, np.float32(0.9), ramp).astype(np.float32)
    scale = min(1.0, 320.0 / max(h, w))
    sw, sh = max(int(round(w * scale)), 8), max(int(round(h * scale)), 8)
    small = cv2.resize(
        (np.clip(rgb, 0, 1) * 255).astype(np.uint8)[..., ::-1], (sw, sh), interpolation=cv2.INTER_AREA
    )
    cx, cy = seed_xy if seed_xy is not None else (w // 2, h // 2)
    sx, sy = min(int(cx * scale), sw - 1), min(int(cy * scale), sh - 1)
    mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    bw, bh = max(sw // 3, 4), max(sh // 3, 4)
    mask[max(sy - bh, 0) : sy + bh + 1, max(sx - bw, 0) : sx + bw + 1] = cv2.GC_PR_FGD
    border = max(2, min(sw, sh) // 50)
    mask[:border, :] = mask[-border:, :] = cv2.GC_BGD
    mask[:, :border] = mask[:, -border:] = cv2.GC_BGD
    seed_r = max(2, min(sw, sh) // 40)
    cv2.circle(mask, (sx, sy), seed_r, cv2.GC_FGD, -1)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        subject = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    except cv2.error:  # degenerate images (flat colour): keep just the seed
        subject = (mask == cv2.GC_FGD).astype(np.uint8)
    # Keep only the connected piece that holds the seed.
    _, labels = cv2.connectedComponents(subject)
    subject = labels == labels[sy, sx] if subject[sy, sx] else subject.astype(bool)
    subject = cv2.resize(subject.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return np.where(subject, np.float32(0.9), ramp).astype(np.float32)


class DepthCache:
    """Process-wide LRU of disparity maps keyed by (photo hash, depth source)."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, DepthResult] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> DepthResult | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: tuple, value: DepthResult) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


DEPTH_CACHE = DepthCache()
_ESTIMATORS: dict[str, DepthAnythingEstimator] = {}
_ESTIMATORS_LOCK = threading.Lock()


def get_estimator(source: str | None = None, *, device: str | None = None) -> DepthAnythingEstimator:
    """The process-wide estimator for a model source (created once, loaded on first use)."""
    source = depth_model_source(source)
    with _ESTIMATORS_LOCK:
        if source not in _ESTIMATORS:
            _ESTIMATORS[source] = DepthAnythingEstimator(source, device=device)
        return _ESTIMATORS[source]


def depth_status(source: str | None = None) -> tuple[bool, str]:
    """(available, sentence) for the depth model, without downloading or loading anything."""
    est = get_estimator(source)
    reason = est.unavailable_reason()
    if reason:
        return False, reason + " Using approximate depth."
    licence = DEPTH_MODEL_LICENCES.get(est.source, "see the model card")
    return True, f"Depth model: {est.source} ({licence})."
