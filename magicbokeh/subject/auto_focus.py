"""Automatic focus: the official rule (median disparity under LDF's salient mask) when a saliency
model is configured, else the caller's heuristic. The rule itself is :func:`magicbokeh.focus.focus_from_mask`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..focus import focus_from_mask
from .ldf import load_ldf, resolve_saliency_model, saliency_mask

RULE_SALIENCY = "saliency"
RULE_HEURISTIC = "heuristic"
DESCRIPTIONS = {
    RULE_SALIENCY: "official: median disparity under the LDF salient-object mask",
    RULE_HEURISTIC: "heuristic: nearest large region (no saliency model configured)",
}


@dataclass
class AutoFocus:
    """Which automatic focus rule applies, and its result.

    Attributes:
        rule: ``"saliency"`` (official) or ``"heuristic"`` (no model: the caller computes the focus).
        focus_disparity: focal plane in [0, 1] for the saliency rule; None for the heuristic.
        mask: the official 8-bit salient mask at the disparity's size (saliency rule), else None.
        model: the saliency weights file used, else None.
        messages: notes for the status line.
    """

    rule: str
    focus_disparity: float | None = None
    mask: np.ndarray | None = None
    model: str | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        """One line for the status text and the JSON (``focus_rule``)."""
        return DESCRIPTIONS[self.rule]

    def info(self) -> dict[str, Any]:
        """JSON-able summary (no arrays)."""
        return {"focus_rule": self.rule, "focus_rule_description": self.description,
                "focus_disparity": self.focus_disparity, "saliency_model": self.model,
                "mask_pixels": None if self.mask is None else int(np.count_nonzero(self.mask)),
                "messages": list(self.messages)}


def auto_focus(
    image: Any,
    disparity: np.ndarray,
    *,
    saliency_model: str | os.PathLike | None = None,
    parity: bool = False,
) -> AutoFocus:
    """Automatic focus for ``image`` on ``disparity`` ((H, W) float32 in [0, 1], 1 = nearest).

    With a saliency model (``saliency_model`` or ``$MAGICBOKEH_SALIENCY_MODEL``), runs LDF as
    ``prepare_data.py`` (mask at the disparity's size) and applies the official rule (any non-zero
    saliency counts; lower median; empty mask = farthest plane). ``parity=True`` takes the median of
    the 8-bit truncated disparity, as ``inference.py``. Without a model returns rule ``"heuristic"``
    and no focus: the caller keeps its own automatic focus.

    Raises:
        MagicBokehError: a configured model file that is missing, hostile or not LDF.
    """
    path = resolve_saliency_model(saliency_model)
    if path is None:
        return AutoFocus(RULE_HEURISTIC)
    mask = saliency_mask(load_ldf(path), image, size=np.asarray(disparity).shape[:2])
    focus = focus_from_mask(disparity, mask, parity=parity)
    messages = []
    if not mask.any():
        messages.append("the salient mask is empty; the official rule focuses on the farthest plane.")
    return AutoFocus(RULE_SALIENCY, focus, mask, str(path), messages)
