"""Many controls in, one settings object out: Gradio passes a *set* of inputs as one dict."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Mapping

import gradio as gr

from ..app_settings import AppSettings

_FIELDS = {f.name for f in fields(AppSettings)}


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

    @property
    def inputs(self) -> set:
        return set(self.components.values())

    def read(self, values: Mapping[Any, Any]) -> AppSettings:
        return AppSettings(**{name: values[c] for name, c in self.components.items() if c in values})

    def handler(self, fn: Callable[[AppSettings, Any], Any]) -> Callable[..., Any]:
        """An event function for Gradio: reads the dict, calls ``fn(settings, progress)``."""
        def event(values: dict, progress: gr.Progress = gr.Progress()) -> Any:
            return fn(self.read(values), progress)

        # Never "render": that API name belongs to the public endpoint (private events get names too).
        event.__name__ = f"{getattr(fn, '__name__', 'event')}_settings"
        event.__doc__ = fn.__doc__
        return event
