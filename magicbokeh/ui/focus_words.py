"""The status line's words for a focus that is not a pixel: which rule chose it and what it kept sharp."""

from __future__ import annotations

from typing import Any

from ..request import RenderResult


def focus_words(result: RenderResult) -> str:
    """E.g. "subject under 2 point(s) (Segment Anything), kept sharp" or "automatic — official rule on
    the salient-object mask", from the result's ``focus_report`` (see magicbokeh.subject.render_focus)."""
    report: dict[str, Any] = result.focus_report or {}
    rule = report.get("focus_rule")
    subject = report.get("subject") or {}
    source = {"sam": "Segment Anything", "grabcut": "GrabCut, no SAM weights", "ldf": "LDF",
              "file": "given mask", "array": "given mask"}.get(subject.get("mask_source"), "")
    kept = ", whole subject kept sharp" if subject.get("keep_sharp") else ""
    if rule == "points":
        n = len(subject.get("points") or [])
        return f"subject under {n} point(s) ({source}){kept}"
    if rule == "mask":
        return f"subject mask{kept}"
    if rule == "saliency":
        return f"automatic — official rule, median under the salient-object mask ({source}){kept}"
    return "automatic — nearest large region (click the photo to choose)"
