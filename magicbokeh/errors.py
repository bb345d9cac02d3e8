"""The one exception type that the app and the CLI turn into a user-facing message."""

from __future__ import annotations


class MagicBokehError(ValueError):
    """Bad input or an unavailable resource, with a message that says what to do next.

    The CLI prints ``str(error)`` on one line and exits non-zero; the app raises ``gr.Error`` with
    the same text.
    """


class BackendUnavailable(MagicBokehError):
    """A backend cannot run on this machine (missing weights, package or device)."""
