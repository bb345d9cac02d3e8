"""Many controls in, one settings object out: Gradio passes a *set* of inputs as one dict."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import fields
from typing import Any, Callable, Mapping

import gradio as gr

from ..app_settings import AppSettings
from . import views

_FIELDS = {f.name for f in fields(AppSettings)}
#: Browser sessions whose last error is remembered (oldest forgotten first).
MAX_SESSIONS = 512


class LastErrors:
    """The last ``gr.Error`` message of each browser session, for the status line after a failure.

    Gradio's ``.failure()`` event learns only that the event failed, not why; the handler's
    wrapper records the message here under the session's hash, and the failure event reads it.
    """

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self._messages: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, session: str | None, message: str) -> None:
        with self._lock:
            self._messages[session or ""] = message
            self._messages.move_to_end(session or "")
            while len(self._messages) > self.limit:
                self._messages.popitem(last=False)

    def pop(self, session: str | None) -> str | None:
        with self._lock:
            return self._messages.pop(session or "", None)


def error_message(exc: BaseException) -> str:
    """The text a ``gr.Error`` shows (its message), or the exception's type and text."""
    if isinstance(exc, gr.Error):
        return str(getattr(exc, "message", exc))
    return f"{type(exc).__name__}: {exc}"


class Form:
    """Which component holds which :class:`AppSettings` field.

    ``inputs`` is a set, so Gradio calls the handler with one ``{component: value}`` dict, which
    :meth:`read` turns into an ``AppSettings`` (fields without a component keep their defaults).
    """

    def __init__(self, components: Mapping[str, Any]) -> None:
        unknown = set(components) - _FIELDS
        if unknown:
            raise ValueError(f"not AppSettings fields: {sorted(unknown)}")
        self.components = dict(components)
        self.errors = LastErrors()

    @property
    def inputs(self) -> set:
        return set(self.components.values())

    def read(self, values: Mapping[Any, Any]) -> AppSettings:
        return AppSettings(**{name: values[c] for name, c in self.components.items() if c in values})

    def handler(self, fn: Callable[[AppSettings, Any], Any]) -> Callable[..., Any]:
        """An event function for Gradio: reads the dict, calls ``fn(settings, progress)``."""
        def event(values: dict, request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> Any:
            try:
                return fn(self.read(values), progress)
            except Exception as exc:
                self.errors.remember(getattr(request, "session_hash", None), error_message(exc))
                raise

        # Never "render": that API name belongs to the public endpoint (private events get names too).
        event.__name__ = f"{getattr(fn, '__name__', 'event')}_settings"
        event.__doc__ = fn.__doc__
        return event

    def failed(self, request: gr.Request = None) -> str:
        """The ``.failure()`` event: the status line says why the last request of this session failed."""
        message = self.errors.pop(getattr(request, "session_hash", None))
        return views.error_status(message or "the request failed (see the message at the top right).")
