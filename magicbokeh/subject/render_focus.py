"""How a render's subject options become its focus and defocus (called by :func:`magicbokeh.pipeline.render`).

Three things, each optional:

* **Point prompts** (``Focus.points``): the subject under ``[x, y, label]`` clicks, from Segment
  Anything or the GrabCut fallback, becomes a mask focus at the photo's own size (before any
  downscale, so the clicks and the embedding cache refer to the photo the user sees).
* **Automatic focus**: with a saliency model configured, the official rule (median disparity under
  LDF's salient mask); without one, the core's nearest-large-region heuristic. Which rule was used
  is reported.
* **Keep the subject sharp** (``subject=True``, our extension): the focal plane is the official
  median under the mask, the defocus is 0 on the subject and feathered at its edge
  (:func:`magicbokeh.subject.defocus.subject_defocus`), and the backends get the weight map under
  :data:`~magicbokeh.subject.defocus.SUBJECT_WEIGHT_OPTION`. Without it nothing here changes the
  official maps.

Masks computed here are cached per (photo, prompts, model), so the frames of a sweep reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..lru import LruCache
from ..errors import MagicBokehError
from ..focus import defocus_map, focus_from_mask, in_focus_mask
from ..notes import warning
from ..request import Focus
from .auto_focus import DESCRIPTIONS, RULE_HEURISTIC, RULE_SALIENCY
from .defocus import SUBJECT_FEATHER_PX, SUBJECT_WEIGHT_OPTION, subject_defocus

#: Focus rules reported as ``focus_rule`` (automatic ones from :mod:`.auto_focus`).
RULE_DESCRIPTIONS = {
    **DESCRIPTIONS,
    "point": "a clicked pixel (median disparity of a 7x7 window; the official pixel with parity)",
    "mask": "official: median disparity under the given subject mask",
    "points": "official: median disparity under the subject selected by the clicked points",
    "disparity": "a given focal-plane disparity",
    "camera": "where the camera focused (recorded in the photo)",
}
NEEDS_MASK = ("keeping the subject sharp needs a subject mask: give a mask (--focus-mask), points on "
              "the subject (--point, or clicks in the app), or configure a saliency model "
              "(--saliency-model / MAGICBOKEH_SALIENCY_MODEL) for automatic focus")
_cache: LruCache[Any] = LruCache(8)


def _cached(key: tuple, make) -> Any:
    return _cache.get_or_make(key, make)


@dataclass
class SubjectPlan:
    """The subject options of one render and what they produced.

    Attributes:
        subject: keep the whole subject sharp (our extension).
        saliency_model: LDF weights for automatic focus (None = ``$MAGICBOKEH_SALIENCY_MODEL``).
        sam_model: SAM checkpoint for point prompts (None = ``$MAGICBOKEH_SAM_MODEL`` or the default).
        rule: the focus rule used (a key of :data:`RULE_DESCRIPTIONS`).
        mask_source: ``"sam"``, ``"grabcut"``, ``"ldf"``, ``"file"`` or ``"array"``; None without a mask.
        mask_model: the model or file the mask came from.
        points: the prompts, ``[x, y, label]`` in the input photo's pixels.
        score: SAM's predicted IoU of the mask.
        mask: (H, W) uint8 0..255, the subject mask the focus used, at the processed size.
        weight: (H, W) float32 defocus weight (0 on the subject) when ``subject``.
        messages: notes for the status line.
    """

    subject: bool = False
    saliency_model: str | None = None
    sam_model: str | None = None
    rule: str = "auto"
    mask_source: str | None = None
    mask_model: str | None = None
    points: list[list[float]] | None = None
    score: float | None = None
    mask: np.ndarray | None = None
    weight: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)

    def backend_options(self) -> dict[str, Any]:
        """Extra backend options: the subject weight when the subject is kept sharp."""
        return {SUBJECT_WEIGHT_OPTION: self.weight} if self.weight is not None else {}

    def mask_at(self, width: int, height: int) -> np.ndarray | None:
        """The mask used, (height, width) uint8 0..255 (resized bilinearly from the processed size)."""
        if self.mask is None:
            return None
        if self.mask.shape == (height, width):
            return self.mask
        import cv2

        return cv2.resize(self.mask, (width, height), interpolation=cv2.INTER_LINEAR)

    def report(self) -> dict[str, Any]:
        """JSON entries of the result: ``focus_rule``, its description, and ``subject`` when a mask was used."""
        out: dict[str, Any] = {"focus_rule": self.rule,
                               "focus_rule_description": RULE_DESCRIPTIONS.get(self.rule, self.rule)}
        if self.mask is not None or self.subject:
            out["subject"] = {
                "keep_sharp": self.subject,
                "feather_px": SUBJECT_FEATHER_PX if self.subject else None,
                "mask_source": self.mask_source,
                "mask_model": self.mask_model,
                "points": self.points,
                "score": None if self.score is None else round(self.score, 4),
                "mask_pixels": None if self.mask is None else int(np.count_nonzero(self.mask)),
            }
        return out


def _uint8(mask: np.ndarray) -> np.ndarray:
    """A bool / float [0, 1] / uint8 mask as uint8 0..255."""
    m = np.asarray(mask)
    if m.dtype == np.uint8:
        return m
    if m.dtype == bool:
        return m.astype(np.uint8) * 255
    return (np.clip(m.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def point_mask(rgb: np.ndarray, points: Any, sam_model: str | None = None) -> tuple[Any, list]:
    """(:class:`~magicbokeh.subject.sam.SubjectMask` under ``points``, the checked points); cached
    per photo, prompts and model."""
    from ..images import content_key
    from .ldf import as_uint8_rgb
    from .masks import check_points
    from .sam import sam_model_id, segment_points

    u8 = as_uint8_rgb(rgb)
    pts = check_points(points, u8.shape[1], u8.shape[0])
    key = ("points", content_key(u8), tuple(pts), sam_model_id(sam_model))
    return _cached(key, lambda: segment_points(u8, pts, model=sam_model)), pts


def prepare(photo: Any, focus: Focus, *, subject: bool = False, saliency_model: Any = None,
            sam_model: str | None = None) -> tuple[Focus, SubjectPlan]:
    """Step 1, on the decoded input photo: point prompts become a mask focus; options are checked.

    Raises:
        MagicBokehError: points outside the photo or selecting nothing; ``subject`` with a focus that
            has no mask (a pixel or a disparity).
    """
    plan = SubjectPlan(subject=bool(subject), saliency_model=None if saliency_model is None else str(saliency_model),
                       sam_model=sam_model, rule=focus.kind)
    if subject and focus.kind in ("point", "disparity"):
        raise MagicBokehError(f"{NEEDS_MASK}; a {'pixel' if focus.kind == 'point' else 'disparity'} "
                              "focus has none.")
    if focus.kind == "points":
        found, pts = point_mask(photo.rgb, focus.prompts, sam_model)
        plan.mask_source, plan.mask_model, plan.score = found.source, found.model, found.score
        plan.points = [[float(x), float(y), int(label)] for x, y, label in pts]
        plan.messages.extend(warning(m) for m in found.messages)
        return Focus.mask(found.mask, parity=focus.parity), plan
    if focus.kind == "mask":
        source = focus.mask_source
        plan.mask_source = "file" if isinstance(source, (str, Path)) else "array"
        plan.mask_model = str(source) if isinstance(source, (str, Path)) else None
    return focus, plan


def _saliency(rgb: np.ndarray, key: str, path: Path, size: tuple[int, int]) -> np.ndarray:
    from .ldf import load_ldf, saliency_mask

    return _cached(("ldf", key, str(path), size), lambda: saliency_mask(load_ldf(path), rgb, size=size))


def resolve(
    plan: SubjectPlan,
    photo: Any,
    disparity: np.ndarray,
    focus: Focus,
    focus_disparity: float,
    mask: np.ndarray | None,
    *,
    k: float,
    focal_range: float,
    camera_focus: bool = False,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Step 2, at the processed size: (focus disparity, defocus, in-focus mask) for the backend.

    Args:
        plan: from :func:`prepare`; filled in here (rule, mask, weight, messages).
        photo: the processed photo (``.rgb``, ``.key``).
        disparity: (H, W) float32 in [0, 1], 1 = nearest.
        focus: the focus after :func:`prepare`; ``focus_disparity`` is what the core resolved for it.
        mask: the mask focus's map at this size, else None.
        k, focal_range: as :func:`magicbokeh.focus.defocus_map`.
        camera_focus: the core used the focus recorded in the photo (no automatic rule applies).

    Raises:
        MagicBokehError: a configured saliency model that cannot be loaded; ``subject`` without a mask,
            or with a mask that has no pixel at least half on.
    """
    from .ldf import resolve_saliency_model

    if camera_focus:
        plan.rule = "camera"
    elif focus.kind == "auto":
        path = resolve_saliency_model(plan.saliency_model)
        if path is None:
            plan.rule = RULE_HEURISTIC
        else:
            plan.rule = RULE_SALIENCY
            mask = _saliency(photo.rgb, photo.key, path, tuple(disparity.shape))
            focus_disparity = focus_from_mask(disparity, mask)
            plan.mask_source, plan.mask_model = "ldf", str(path)
            if not mask.any():
                plan.messages.append(warning("the salient mask is empty; the official rule focuses on the "
                                             "farthest plane."))
        plan.messages.append(f"Automatic focus: {RULE_DESCRIPTIONS[plan.rule]}.")
    if mask is not None:
        plan.mask = _uint8(mask)
        if focus.kind in ("mask", "points") and not np.any(mask):
            plan.messages.append(warning("the subject mask is empty; the official rule focuses on the farthest "
                                         "plane. Give a mask with the subject in it."))
    if not plan.subject:
        defocus = defocus_map(disparity, focus_disparity, k, focal_range=focal_range)
        return focus_disparity, defocus, in_focus_mask(defocus)
    if mask is None:
        raise MagicBokehError(f"{NEEDS_MASK}; automatic focus without a saliency model has none.")
    # The original values (not the 8-bit copy): the focal plane is exactly the official median.
    kept = subject_defocus(disparity, mask, k, focal_range=focal_range, parity=focus.parity)
    plan.weight = kept.weight
    plan.messages.append(
        f"Subject kept sharp: {100 * kept.subject.mean():.1f} % of the photo at defocus 0 "
        f"(edge feathered over {SUBJECT_FEATHER_PX:g} px); the background is blurred as without it."
    )
    return kept.focus_disparity, kept.defocus, kept.in_focus
