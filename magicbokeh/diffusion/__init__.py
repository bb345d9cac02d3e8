"""MagicBokeh diffusion backend: the official one-step model rebuilt on current diffusers.

Modules (one idea each):

* ``sources``     where the weights come from (argument → env var → default) and fetching them
* ``safe_pickle`` restricted unpickling of ``lora.pkl`` (no code from the file ever runs)
* ``checkpoint``  ``lora.pkl`` or a trained safetensors folder → plain tensors (``MagicBokehCheckpoint``)
* ``lora``        merging peft LoRA into base weights
* ``models``      patched UNet, ``FocusControlNet``, processor installation
* ``attention``   focus-aware masked attention (SDPA / xformers / naive reference)
* ``forward``     the per-tile one-step forward, shared by inference and training
* ``loading``     ``load_magicbokeh`` and the converted-weights cache
* ``tiling``      official 512/256 tiling and linear-ramp blending
* ``color_fix``   AdaIN / wavelet colour correction
* ``pipeline``    ``MagicBokehPipeline``: tiled one-step inference with a latent cache
* ``backend``     ``MagicBokehBackend`` for the backend registry
* ``reference``   a plain re-implementation of the official per-tile algorithm (tests/benchmarks)

Names are exported lazily, so importing this package (e.g. for ``availability()``) does not
import torch or diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MagicBokehBackend": "backend",
    "load_magicbokeh": "loading",
    "MagicBokehModel": "loading",
    "MagicBokehPipeline": "pipeline",
    "RenderOutput": "pipeline",
    "read_checkpoint": "checkpoint",
    "MagicBokehCheckpoint": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
