"""magicbokeh: one inference core for MagicBokeh (CVPR 2026) and a weight-free lens-blur renderer.

Public names are imported lazily so that ``import magicbokeh`` pulls in neither torch nor gradio.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "pipeline",
    "render": "pipeline",
    "RenderRequest": "request",
    "RenderSettings": "request",
    "RenderResult": "request",
    "Focus": "request",
    "resolve_disparity": "pipeline",
    "load_photo": "images",
    "render_lens_blur": "lens_blur",
    "MagicBokehError": "errors",
    "get_backend": "backends",
    "backend_availability": "backends",
    "register_backend": "backends",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'magicbokeh' has no attribute {name!r}")
