"""Point-prompt subject selection with Segment Anything (transformers ``SamModel``).

Default checkpoint: ``facebook/sam-vit-base`` (SAM ViT-B, Apache-2.0, ~375 MB). Among the SAM v1
checkpoints it is the fastest on a CPU (the ViT-L/H encoders cost 3-6x more for little gain on
photo subjects), and its licence allows a public demo. Set ``MAGICBOKEH_SAM_MODEL`` (a hub id or a
local folder of a SAM v1 checkpoint, e.g. ``facebook/sam-vit-large``) to use another.

Cost model: the image encoder (the ViT) runs once per photo; its embedding is cached by the photo's
content hash, so further clicks on the same photo (adding positive or negative points) run only the
prompt encoder and the small mask decoder. Weights load from the Hugging Face cache on first use,
never at import time. Without weights (offline, nothing cached) :func:`segment_points` falls back to
GrabCut seeded by the clicks and says so in the result.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .. import hub
from ..errors import MagicBokehError
from ..images import content_key
from .ldf import as_uint8_rgb
from .masks import check_points

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

DEFAULT_SAM_MODEL = "facebook/sam-vit-base"
ENV_SAM_MODEL = "MAGICBOKEH_SAM_MODEL"
SAM_LICENCE_TEXT = "Segment Anything (Kirillov et al., 2023), facebook/sam-vit-base: Apache-2.0."
#: Photos whose embeddings are kept (each ViT-B embedding is 256x64x64 float32 = 4 MiB).
EMBEDDING_CACHE_SIZE = 8


class SamUnavailable(MagicBokehError):
    """The SAM weights cannot be had (offline and not cached, or not a SAM checkpoint)."""


@dataclass
class SubjectMask:
    """A subject selected by points.

    Attributes:
        mask: (H, W) bool, True on the subject.
        source: ``"sam"`` or ``"grabcut"``.
        model: the SAM model id or folder (``"opencv-grabcut"`` for the fallback).
        score: SAM's predicted IoU of the chosen mask in [0, 1] (None for GrabCut).
        embedding_cached: True when the photo's image embedding came from the cache.
        messages: sentences for the status line (e.g. why the fallback was used).
    """

    mask: np.ndarray
    source: str
    model: str
    score: float | None = None
    embedding_cached: bool = False
    messages: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """The JSON-able description (everything but the mask)."""
        return {"source": self.source, "model": self.model, "score": self.score,
                "embedding_cached": self.embedding_cached, "pixels": int(self.mask.sum()),
                "messages": list(self.messages)}


@dataclass
class _Embedding:
    embeddings: "torch.Tensor"
    original_size: tuple[int, int]
    reshaped_size: tuple[int, int]


def sam_model_id(model: str | os.PathLike | None = None) -> str:
    """``model``, else ``$MAGICBOKEH_SAM_MODEL``, else :data:`DEFAULT_SAM_MODEL`."""
    raw = os.fspath(model) if model is not None else os.environ.get(ENV_SAM_MODEL, "").strip()
    return raw or DEFAULT_SAM_MODEL


def sam_status(model: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(SAM weights can be had now, one line for the app) without loading or downloading anything."""
    model_id = sam_model_id(model)
    if hub.is_local_source(model_id) or hub.cached_file(model_id, "config.json") is not None:
        return True, f"clicks select the subject with Segment Anything ({model_id})."
    if hub.hub_reachable():
        return True, f"clicks select the subject with Segment Anything ({model_id}, downloaded on the first click)."
    return False, ("clicks select the subject with GrabCut: "
                   + hub.missing_weights_message("Segment Anything", model_id))


class PointSegmenter:
    """SAM with a per-photo embedding cache. Thread-safe; the model loads on the first click."""

    def __init__(self, model: str | os.PathLike | None = None, *, cache_size: int = EMBEDDING_CACHE_SIZE):
        self.model_id = sam_model_id(model)
        self.cache_size = int(cache_size)
        self._model = None
        self._processor = None
        self._cache: OrderedDict[str, _Embedding] = OrderedDict()
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import SamModel, SamProcessor

        local = hub.is_local_source(self.model_id)
        if not local and hub.cached_file(self.model_id, "config.json") is None and not hub.hub_reachable():
            raise SamUnavailable(hub.missing_weights_message("Segment Anything", self.model_id))
        try:
            processor = SamProcessor.from_pretrained(self.model_id, local_files_only=hub.offline_requested())
            model = SamModel.from_pretrained(self.model_id, dtype=torch.float32,
                                             local_files_only=hub.offline_requested())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SamUnavailable(f"cannot load Segment Anything from {self.model_id}: {exc}") from None
        self._model, self._processor = model.eval(), processor

    # -- the two stages ----------------------------------------------------------------------

    def _embedding(self, rgb: np.ndarray, key: str) -> tuple[_Embedding, bool]:
        import torch
        from PIL import Image

        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key], True
        inputs = self._processor(images=Image.fromarray(rgb), return_tensors="pt")
        with torch.inference_mode():
            emb = self._model.get_image_embeddings(inputs["pixel_values"])
        entry = _Embedding(emb, tuple(int(v) for v in inputs["original_sizes"][0]),
                           tuple(int(v) for v in inputs["reshaped_input_sizes"][0]))
        self._cache[key] = entry
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry, False

    def _decode(self, entry: _Embedding, points: Sequence[tuple[float, float, int]]) -> tuple[np.ndarray, float]:
        import torch

        (oh, ow), (rh, rw) = entry.original_size, entry.reshaped_size
        # Photo pixels -> the encoder's resized frame (what SamProcessor does to points).
        coords = torch.tensor([[[[x * rw / ow, y * rh / oh] for x, y, _ in points]]], dtype=torch.float32)
        labels = torch.tensor([[[label for _, _, label in points]]], dtype=torch.long)
        # One point is ambiguous (part / object / whole): ask for three masks and keep the best
        # scored; with several points SAM's single mask is the better one.
        multimask = len(points) == 1
        with torch.inference_mode():
            out = self._model(image_embeddings=entry.embeddings, input_points=coords, input_labels=labels,
                              multimask_output=multimask)
            scores = out.iou_scores[0, 0]
            best = int(torch.argmax(scores))
            masks = self._processor.image_processor.post_process_masks(
                out.pred_masks[:, :, best:best + 1], torch.tensor([entry.original_size]),
                torch.tensor([entry.reshaped_size]), binarize=True)
        return masks[0][0, 0].numpy().astype(bool), float(scores[best])

    def segment(self, image: Any, points: Sequence[Sequence[float]], *, key: str | None = None) -> SubjectMask:
        """The subject under the points (SAM only; raises :class:`SamUnavailable` without weights).

        Args:
            image: (H, W, 3) uint8 or float [0, 1] RGB, or a PIL image (upright).
            points: ``[x, y, label]`` in the photo's pixels; label 1 = subject, 0 = not the subject.
            key: the photo's content hash when the caller has it (``Photo.key``); else computed.

        Raises:
            MagicBokehError: bad points, or the points select nothing.
        """
        rgb = as_uint8_rgb(image)
        h, w = rgb.shape[:2]
        pts = check_points(points, w, h)
        key = key or content_key(rgb)
        with self._lock:
            self._load()
            entry, cached = self._embedding(rgb, key)
            mask, score = self._decode(entry, pts)
        if not mask.any():
            raise MagicBokehError("the clicked points selected nothing; click inside the subject.")
        return SubjectMask(mask, "sam", self.model_id, score=score, embedding_cached=cached)

    def clear(self) -> None:
        """Forget the cached embeddings (the model stays loaded)."""
        with self._lock:
            self._cache.clear()


_SEGMENTERS: dict[str, PointSegmenter] = {}
_SEGMENTERS_LOCK = threading.Lock()


def segmenter(model: str | os.PathLike | None = None) -> PointSegmenter:
    """The process-wide :class:`PointSegmenter` for ``model`` (one embedding cache per model)."""
    model_id = sam_model_id(model)
    with _SEGMENTERS_LOCK:
        if model_id not in _SEGMENTERS:
            _SEGMENTERS[model_id] = PointSegmenter(model_id)
        return _SEGMENTERS[model_id]


def segment_points(
    image: Any,
    points: Sequence[Sequence[float]],
    *,
    model: str | os.PathLike | None = None,
    key: str | None = None,
    allow_fallback: bool = True,
) -> SubjectMask:
    """The subject under the clicks: SAM when its weights can be had, else GrabCut (said so).

    Args:
        image: (H, W, 3) uint8 or float [0, 1] RGB (upright), or a PIL image.
        points: ``[x, y, label]`` in the photo's pixels; label 1 = subject, 0 = not the subject.
        model: SAM hub id or folder; default ``$MAGICBOKEH_SAM_MODEL`` or ``facebook/sam-vit-base``.
        key: the photo's content hash (``Photo.key``), to skip hashing; embeddings are cached by it.
        allow_fallback: False raises :class:`SamUnavailable` instead of using GrabCut.
    """
    try:
        return segmenter(model).segment(image, points, key=key)
    except SamUnavailable as exc:
        if not allow_fallback:
            raise
        from .grabcut import grabcut_subject

        rgb = as_uint8_rgb(image)
        pts = check_points(points, rgb.shape[1], rgb.shape[0])
        mask = grabcut_subject(rgb, pts)
        if not mask.any():
            raise MagicBokehError("the clicked points selected nothing; click inside the subject.") from None
        why = f"Segment Anything unavailable ({exc}); subject from GrabCut seeded by the clicks."
        logger.info(why)
        return SubjectMask(mask, "grabcut", "opencv-grabcut", messages=[why])
