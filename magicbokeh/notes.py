"""Notes that a render hands back, each with a severity, so no caller classifies text.

A :class:`Note` is a ``str`` (every existing use of ``RenderResult.messages`` — JSON, printing,
comparison — is unchanged) that also carries ``severity``: ``"info"`` or ``"warning"``. Plain
strings count as ``"info"``. A warning is something the user should act on or know is degraded
(approximate depth, a GPU that was not available).
"""

from __future__ import annotations

from typing import Any

SEVERITIES = ("info", "warning")


class Note(str):
    """A message with a severity (``"info"`` or ``"warning"``); otherwise the string itself."""

    severity: str

    def __new__(cls, text: str, severity: str = "info") -> "Note":
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}; choose {' or '.join(SEVERITIES)}.")
        note = super().__new__(cls, text)
        note.severity = severity
        return note

    def __reduce__(self) -> tuple:  # pickles across the ZeroGPU worker with its severity
        return (Note, (str(self), self.severity))


def warning(text: str) -> Note:
    """A note the user should see flagged."""
    return Note(text, "warning")


def severity(message: Any) -> str:
    """The severity of a message: a Note's own, ``"info"`` for a plain string."""
    return getattr(message, "severity", "info")


def is_warning(message: Any) -> bool:
    """True for a warning note."""
    return severity(message) == "warning"
