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

from .. import hub
from ..errors import MagicBokehError
from ..depth_anything import DEFAULT_INPUT_SIZE, is_checkpoint_file
from ..focus import normalise_disparity

logger = logging.getLogger(__name__)

DEPTH_MODEL_ENV = "MAGICBOKEH_DEPTH_MODEL"
APPROXIMATE_LABEL = "approximate depth (subject cut-out + ground-plane ramp, no model)"


@dataclass(frozen=True)
class DepthModel:
    """A named depth model: ``source`` is what :func:`get_estimator` loads."""

    name: str
    source: str
    label: str
    licence: str


#: The depth models offered by name (CLI ``--depth-model NAME``, the app's selector).
DEPTH_MODELS: dict[str, DepthModel] = {
    "dadepth": DepthModel(
        "dadepth", "dadepth", "DA depth (MagicBokeh, degradation-aware ViT-L)",
        "derived from Depth Anything V2 Large (CC-BY-NC-4.0); its own terms are unstated",
    ),
    "small": DepthModel("small", "depth-anything/Depth-Anything-V2-Small-hf", "Depth Anything V2 Small", "Apache-2.0"),
    "base": DepthModel("base", "depth-anything/Depth-Anything-V2-Base-hf", "Depth Anything V2 Base", "CC-BY-NC-4.0"),
    "large": DepthModel("large", "depth-anything/Depth-Anything-V2-Large-hf", "Depth Anything V2 Large", "CC-BY-NC-4.0"),
}
#: Apache-2.0, so usable in any demo; DA depth is preferred on a GPU when its weights are present.
DEFAULT_DEPTH_MODEL = DEPTH_MODELS["small"].source
DEPTH_MODEL_LICENCES = {m.source: m.licence for m in DEPTH_MODELS.values()}


@dataclass
class DepthResult:
    """Disparity (H, W) float32 in [0, 1], 1 = nearest, with where it came from."""

    disparity: np.ndarray
    source: str
    approximate: bool = False
    messages: tuple[str, ...] = ()


def model_source_for(spec: str) -> str:
    """The source of a depth-model name (``small`` -> its hub id); anything else unchanged.

    An existing file or folder of that name wins over the name.
    """
    if spec in DEPTH_MODELS and not os.path.exists(spec):
        return DEPTH_MODELS[spec].source
    return spec


def _cuda_available() -> bool:
    if (os.environ.get("MAGICBOKEH_DEVICE") or "auto").startswith("cpu"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _dadepth_weights_present() -> bool:
    from ..dadepth import DADEPTH_FILENAME, DADEPTH_REPO

    return hub.cached_file(DADEPTH_REPO, DADEPTH_FILENAME) is not None


def choose_depth_model(spec: str | None = None) -> tuple[str, str]:
    """(model source, why) for a depth spec; ``None``/``"auto"`` picks automatically.

    Order: the argument, then ``MAGICBOKEH_DEPTH_MODEL``, then automatic: on a GPU DA depth when
    its weights are already present (the paper's pairing for low-quality photos), otherwise
    Depth Anything V2 Small (Apache-2.0; ViT-L is several times slower on a CPU).
    """
    if spec and spec != "auto":
        return model_source_for(spec), "chosen"
    if os.environ.get(DEPTH_MODEL_ENV):
        return model_source_for(os.environ[DEPTH_MODEL_ENV]), f"from ${DEPTH_MODEL_ENV}"
    # Weights first: the device check imports torch, which an app start should not pay for.
    if not _dadepth_weights_present():
        return DEFAULT_DEPTH_MODEL, "automatic: DA depth is used on a GPU once its weights are downloaded"
    if _cuda_available():
        return DEPTH_MODELS["dadepth"].source, "automatic: GPU and DA depth weights present"
    return DEFAULT_DEPTH_MODEL, "automatic: CPU (DA depth, a ViT-L, is several times slower here)"


def depthmodel_source_for(source: str | None = None) -> str:
    """Depth model source for a spec: argument, then ``MAGICBOKEH_DEPTH_MODEL``, then automatic."""
    return choose_depth_model(source)[0]


def describe_source(source: str) -> str:
    """A readable label for a depth model source (its name in :data:`DEPTH_MODELS` when known)."""
    for model in DEPTH_MODELS.values():
        if model.source == source:
            return f"{model.label} ({source if model.name != 'dadepth' else 'LinxiaoShi/Magicbokeh DAdepth.pth'})"
    return f"Depth Anything V2 ({source})"


class DepthAnythingEstimator:
    """A Depth Anything V2 model (hub id, folder, DA depth or ``.pth``), loaded once, official pipeline.

    Runs :func:`magicbokeh.depth_anything.predict_disparity`: the official resize rule, the
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
            from ..dadepth import DADEPTH_FILENAME, DADEPTH_REPO

            spec = f"{DADEPTH_REPO}/{DADEPTH_FILENAME}" if self.source == "dadepth" else self.source
            parts = spec.split("/")
            repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
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
        from ..depth_anything import load_depth_model

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
        from ..depth_anything import predict_disparity

        with self._lock:
            self._load()
            return predict_disparity(self._model, rgb, input_size=self.input_size)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Disparity (H, W) float32 in [0, 1], 1 = nearest, for a float RGB photo."""
        # Relative models predict inverse depth (larger = nearer): normalise per image.
        return normalise_disparity(self.predict_raw(rgb))


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
    resolved = depthmodel_source_for(source)
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
