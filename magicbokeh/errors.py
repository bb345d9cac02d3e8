"""The one exception type that the app and the CLI turn into a user-facing message."""

from __future__ import annotations


class MagicBokehError(ValueError):
    """Bad input or an unavailable resource, with a message that says what to do next.

    The CLI prints ``str(error)`` on one line and exits non-zero; the app raises ``gr.Error`` with
    the same text.
    """


class BackendUnavailable(MagicBokehError):
    """A backend cannot run on this machine (missing weights, package or device)."""


def preview_names(names: list[str], limit: int = 6, *, quote: bool = True) -> str:
    """The first ``limit`` names for an error message, then how many more ("'a', 'b' and 3 more")."""
    shown = ", ".join(repr(n) if quote else str(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
