"""Reading the official ``lora.pkl`` (spec §4.2) into plain tensors, safely.

The file is a ``torch.save`` dict with the LoRA ranks, target lists and peft-named tensors of the
UNet and VAE encoder, the rank and tensors of the nine masked-attention processors, and a pickled
``ControlNetModel`` object. The object is read with the restricted unpickler of ``safe_pickle``
and flattened to a state dict; no class from the file is imported or called.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import MagicBokehError
from .safe_pickle import PickledObject, module_state_dict, plain_tensor, restricted_torch_load, stub_config

logger = logging.getLogger(__name__)

#: Top-level keys the official loader reads (spec §4.2).
REQUIRED_KEYS = (
    "rank_unet",
    "unet_lora_encoder_modules",
    "unet_lora_decoder_modules",
    "state_dict_unet",
    "rank_vae",
    "vae_lora_encoder_modules",
    "state_dict_vae",
    "controlnet",
    "state_dict_attn",
    "processor_state_dict",
)
#: peft adapter names used by the official code.
UNET_ENCODER_ADAPTER = "default_encoder"
UNET_DECODER_ADAPTER = "default_decoder"
VAE_ADAPTER = "default_encoder"


@dataclass
class MagicBokehCheckpoint:
    """Contents of ``lora.pkl`` as plain data (all tensors on CPU, possibly memory-mapped).

    Attributes:
        rank_unet, rank_vae: peft LoRA ranks (scale 8 / r).
        unet_encoder_modules, unet_decoder_modules, vae_modules: LoRA target module names.
        state_dict_unet: UNet LoRA tensors plus the fine-tuned ``conv_in.base_layer.*``.
        state_dict_vae: VAE encoder LoRA tensors.
        controlnet_state_dict: the pickled ControlNet's weights, flattened.
        controlnet_config: the pickled ControlNet's diffusers config (may be empty).
        rank_attn: rank of the masked-attention processor LoRA (``state_dict_attn``; scale 1 / r).
        processor_state_dict: ``<processor name>.to_{q,k,v,out}_lora.{0,1}.weight`` tensors.
        extra_keys: top-level keys the loader does not use.
    """

    rank_unet: int
    unet_encoder_modules: list[str]
    unet_decoder_modules: list[str]
    state_dict_unet: dict[str, torch.Tensor]
    rank_vae: int
    vae_modules: list[str]
    state_dict_vae: dict[str, torch.Tensor]
    controlnet_state_dict: dict[str, torch.Tensor]
    controlnet_config: dict[str, Any]
    rank_attn: int
    processor_state_dict: dict[str, torch.Tensor]
    extra_keys: list[str] = field(default_factory=list)


def read_checkpoint(path: str | Path) -> MagicBokehCheckpoint:
    """Load and validate ``lora.pkl`` without executing anything from it.

    Raises:
        MagicBokehError: refused globals, truncated/corrupt files, missing keys or wrong types.
    """
    raw = restricted_torch_load(path)
    return parse_checkpoint(raw, source=str(path))


def parse_checkpoint(raw: Any, *, source: str = "lora.pkl") -> MagicBokehCheckpoint:
    """Validate the top-level dict of ``lora.pkl`` and convert it to a ``MagicBokehCheckpoint``."""
    if not isinstance(raw, Mapping):
        raise MagicBokehError(
            f"{source} holds a {type(raw).__name__}, not the dict of a MagicBokeh checkpoint."
        )
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise MagicBokehError(
            f"{source} is not a complete MagicBokeh checkpoint: missing key(s) {', '.join(missing)}."
        )
    extra = sorted(str(k) for k in raw if k not in REQUIRED_KEYS)
    if extra:
        logger.info("%s: ignoring extra top-level keys %s", source, extra)

    controlnet = raw["controlnet"]
    if isinstance(controlnet, PickledObject):
        cn_state = module_state_dict(controlnet)
        cn_config = stub_config(controlnet)
    elif isinstance(controlnet, Mapping):  # a plain state dict is accepted too
        cn_state = _tensor_dict(controlnet, "controlnet", source)
        cn_config = {}
    else:
        raise MagicBokehError(
            f"{source}['controlnet'] is a {type(controlnet).__name__}; expected a pickled ControlNet."
        )
    return MagicBokehCheckpoint(
        rank_unet=_rank(raw["rank_unet"], "rank_unet", source),
        unet_encoder_modules=_names(raw["unet_lora_encoder_modules"], "unet_lora_encoder_modules", source),
        unet_decoder_modules=_names(raw["unet_lora_decoder_modules"], "unet_lora_decoder_modules", source),
        state_dict_unet=_tensor_dict(raw["state_dict_unet"], "state_dict_unet", source),
        rank_vae=_rank(raw["rank_vae"], "rank_vae", source),
        vae_modules=_names(raw["vae_lora_encoder_modules"], "vae_lora_encoder_modules", source),
        state_dict_vae=_tensor_dict(raw["state_dict_vae"], "state_dict_vae", source),
        controlnet_state_dict=cn_state,
        controlnet_config=cn_config,
        rank_attn=_rank(raw["state_dict_attn"], "state_dict_attn", source),
        processor_state_dict=_tensor_dict(raw["processor_state_dict"], "processor_state_dict", source),
        extra_keys=extra,
    )


def _rank(value: Any, key: str, source: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = torch.Tensor.item(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise MagicBokehError(f"{source}['{key}'] must be a positive integer rank; got {value!r}.")
    return value


def _names(value: Any, key: str, source: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise MagicBokehError(f"{source}['{key}'] must be a list of module names.")
    return list(value)


def _tensor_dict(value: Any, key: str, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, Mapping):
        raise MagicBokehError(f"{source}['{key}'] must be a dict of tensors; got {type(value).__name__}.")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in value.items():
        if not isinstance(name, str):
            raise MagicBokehError(f"{source}['{key}'] has a non-string key {name!r}.")
        out[name] = plain_tensor(tensor, f"{source}['{key}'][{name!r}]")
    return out


__all__ = [
    "MagicBokehCheckpoint",
    "REQUIRED_KEYS",
    "UNET_DECODER_ADAPTER",
    "UNET_ENCODER_ADAPTER",
    "VAE_ADAPTER",
    "parse_checkpoint",
    "read_checkpoint",
]
