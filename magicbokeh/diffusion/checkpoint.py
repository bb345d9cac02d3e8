"""Reading the official ``lora.pkl`` (spec §4.2), and our trained-weights folders, into plain tensors.

The file is a ``torch.save`` dict with the LoRA ranks, target lists and peft-named tensors of the
UNet and VAE encoder, the rank and tensors of the nine masked-attention processors, and a pickled
``ControlNetModel`` object. The object is read with the restricted unpickler of ``safe_pickle``
and flattened to a state dict; no class from the file is imported or called.

A folder exported by ``python -m magicbokeh.train.magicbokeh`` (``DIR/final``, ``DIR/checkpoint-N``)
holds the same contents as safetensors files plus a ``config.json`` (:func:`write_trained_folder`):

* ``unet_lora.safetensors``: the two UNet adapters (``<module>.lora_{A,B}.default_{encoder,decoder}.weight``)
  and the fine-tuned ``conv_in.base_layer.{weight,bias}``;
* ``vae_lora.safetensors``: the VAE-encoder adapter (``<module>.lora_{A,B}.default_encoder.weight``);
* ``controlnet.safetensors``: the whole ControlNet (stock names minus mid block / cross-attention);
* ``attention_lora.safetensors``: the masked-attention adapters
  (``<processor>.to_{q,k,v,out}_lora.{0,1}.weight``);
* ``config.json``: format, ranks and alphas, LoRA target lists, the ControlNet/UNet/VAE configs and
  the base model the weights were trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import MagicBokehError
from .sources import TRAINED_CONFIG, TRAINED_FORMAT, TRAINED_FORMAT_VERSION, is_trained_folder
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
    """Load and validate ``lora.pkl`` (without executing anything from it) or a trained-weights folder.

    Raises:
        MagicBokehError: refused globals, truncated/corrupt files, missing keys or wrong types.
    """
    if Path(path).is_dir():
        return read_trained_folder(path)
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


#: Weight files of a trained-weights folder, by part.
TRAINED_FILES = {
    "unet": "unet_lora.safetensors",
    "vae": "vae_lora.safetensors",
    "controlnet": "controlnet.safetensors",
    "attention": "attention_lora.safetensors",
}
#: LoRA alphas the loader merges with (peft's default 8 for UNet/VAE, 1.0 for the processors).
TRAINED_ALPHAS = {"lora_alpha_unet": 8.0, "lora_alpha_vae": 8.0, "lora_alpha_attn": 1.0}


def write_trained_folder(folder: str | Path, ckpt: MagicBokehCheckpoint, *, extra: Mapping[str, Any]) -> None:
    """Write ``ckpt`` as safetensors files + ``config.json`` into ``folder`` (created if needed).

    Args:
        folder: target folder; existing files of the same names are overwritten.
        ckpt: the weights (any device/dtype; written as contiguous CPU tensors, dtype kept).
        extra: JSON-serialisable entries merged into ``config.json`` (``base``, ``unet_config``, …).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = {
        "unet": ckpt.state_dict_unet,
        "vae": ckpt.state_dict_vae,
        "controlnet": ckpt.controlnet_state_dict,
        "attention": ckpt.processor_state_dict,
    }
    for part, state in parts.items():
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        save_file(tensors, str(folder / TRAINED_FILES[part]), metadata={"format": TRAINED_FORMAT})
    config = {
        "format": TRAINED_FORMAT,
        "format_version": TRAINED_FORMAT_VERSION,
        "files": dict(TRAINED_FILES),
        "rank_unet": ckpt.rank_unet,
        "rank_vae": ckpt.rank_vae,
        "rank_attn": ckpt.rank_attn,
        **TRAINED_ALPHAS,
        "unet_lora_encoder_modules": list(ckpt.unet_encoder_modules),
        "unet_lora_decoder_modules": list(ckpt.unet_decoder_modules),
        "vae_lora_encoder_modules": list(dict.fromkeys(ckpt.vae_modules)),
        "controlnet_config": _jsonable(ckpt.controlnet_config),
        **_jsonable(dict(extra)),
    }
    (folder / TRAINED_CONFIG).write_text(json.dumps(config, indent=1) + "\n")


def read_trained_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a trained-weights folder, validated (format, version, alphas)."""
    folder = Path(folder)
    if not is_trained_folder(folder):
        raise MagicBokehError(
            f"{folder} is not a trained MagicBokeh folder (no {TRAINED_CONFIG} with format "
            f"{TRAINED_FORMAT!r}); pass DIR/final or DIR/checkpoint-N of a training run, or a lora.pkl."
        )
    config = json.loads((folder / TRAINED_CONFIG).read_text())
    version = config.get("format_version")
    if version != TRAINED_FORMAT_VERSION:
        raise MagicBokehError(
            f"{folder / TRAINED_CONFIG} has format version {version}; this magicbokeh reads version "
            f"{TRAINED_FORMAT_VERSION}. Update magicbokeh or re-export the weights."
        )
    for key, want in TRAINED_ALPHAS.items():
        if float(config.get(key, want)) != want:
            raise MagicBokehError(f"{folder / TRAINED_CONFIG}: {key}={config[key]} is not supported (only {want}).")
    return config


def read_trained_folder(folder: str | Path) -> MagicBokehCheckpoint:
    """A ``MagicBokehCheckpoint`` from a trained-weights folder (safetensors only, no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_trained_config(folder)
    source = str(folder)
    states: dict[str, dict[str, torch.Tensor]] = {}
    for part, name in TRAINED_FILES.items():
        path = folder / name
        if not path.is_file():
            raise MagicBokehError(f"{folder} lacks {name}; the export is incomplete (re-run the export).")
        try:
            states[part] = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise MagicBokehError(f"{path} is not a readable safetensors file ({exc}); re-export it.") from None
    return MagicBokehCheckpoint(
        rank_unet=_rank(config.get("rank_unet"), "rank_unet", source),
        unet_encoder_modules=_names(config.get("unet_lora_encoder_modules"), "unet_lora_encoder_modules", source),
        unet_decoder_modules=_names(config.get("unet_lora_decoder_modules"), "unet_lora_decoder_modules", source),
        state_dict_unet=states["unet"],
        rank_vae=_rank(config.get("rank_vae"), "rank_vae", source),
        vae_modules=_names(config.get("vae_lora_encoder_modules"), "vae_lora_encoder_modules", source),
        state_dict_vae=states["vae"],
        controlnet_state_dict=states["controlnet"],
        controlnet_config=dict(config.get("controlnet_config") or {}),
        rank_attn=_rank(config.get("rank_attn"), "rank_attn", source),
        processor_state_dict=states["attention"],
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


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
    "TRAINED_ALPHAS",
    "TRAINED_FILES",
    "parse_checkpoint",
    "read_checkpoint",
    "read_trained_config",
    "read_trained_folder",
    "write_trained_folder",
]
