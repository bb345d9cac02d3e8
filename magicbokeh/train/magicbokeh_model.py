"""The trainable MagicBokeh network: the backend's architecture with separate peft adapters.

Built from the same code as inference (``magicbokeh.diffusion.models``): the UNet is patched
(no mid block, no cross-attention) and carries the focus-masked processors, the ControlNet is a
``FocusControlNet`` initialised from the UNet's encoder, and the forward is
``magicbokeh.diffusion.forward.restore_tiles``, the function the inference pipeline runs per tile.
The LoRA adapters stay separate (peft) while training; :func:`export_checkpoint` turns the trained
parts into a ``MagicBokehCheckpoint`` that the backend merges when it loads.

Trainable parts, by phase:

* ``sr_pretrain``: the VAE-encoder LoRA, the UNet SR LoRA (both adapters) and the UNet's ``conv_in``;
* ``bokeh``: the whole ControlNet and the masked-attention LoRA (processor adapters);
* ``isr``: the UNet SR LoRA.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MagicBokehError
from ..diffusion.checkpoint import (
    UNET_DECODER_ADAPTER,
    UNET_ENCODER_ADAPTER,
    VAE_ADAPTER,
    MagicBokehCheckpoint,
    read_checkpoint,
)
from ..diffusion.forward import OneStepConstants, restore_tiles
from ..diffusion.loading import conditioning_layout, alpha_prod_at_last_step
from ..diffusion.lora import PEFT_DEFAULT_ALPHA, official_unet_lora_targets, official_vae_lora_targets
from ..diffusion.models import FocusControlNet, install_processors, patch_unet, set_plain_processors
from ..diffusion.sources import BaseFiles
from .magicbokeh_config import PHASES, Config

logger = logging.getLogger(__name__)

#: ControlNet parameters that ``from_unet`` does not copy (new layers).
_CONTROLNET_NEW = ("controlnet_cond_embedding.", "controlnet_down_blocks.")


class MagicBokehNet(nn.Module):
    """UNet + ControlNet + VAE with the one-step forward of the inference pipeline.

    ``forward(x, defocus, in_focus, noise)`` is ``restore_tiles``: ``x`` ``(B, 3, T, T)`` in
    [-1, 1], ``defocus`` ``(B, 1, T, T)`` in [0, 1], ``in_focus`` ``(B, T, T)`` bool or None (no
    attention restriction), ``noise`` ``(B, 4, T/f, T/f)`` float32 → ``(B, 3, T, T)`` in [-1, 1].
    """

    def __init__(self, unet: nn.Module, controlnet: FocusControlNet, vae: nn.Module, consts: OneStepConstants):
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet
        self.vae = vae
        self.consts = consts

    def forward(
        self, x: torch.Tensor, defocus: torch.Tensor, in_focus: torch.Tensor | None, noise: torch.Tensor
    ) -> torch.Tensor:
        # fp32 activations; under mixed precision autocast runs the maths in bf16/fp16
        return restore_tiles(self.unet, self.controlnet, self.vae, self.consts, x, defocus, in_focus, noise,
                             torch.float32)

    @property
    def tile_size(self) -> int:
        return int(self.unet.config.sample_size) * self.consts.vae_scale_factor

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)


@dataclass
class Adapters:
    """Ranks and target lists of the three adapters."""

    rank_unet: int
    rank_vae: int
    rank_attn: int
    unet_encoder: list[str]
    unet_decoder: list[str]
    vae: list[str]


def build_net(config: Config, base_files: BaseFiles, *, init: MagicBokehCheckpoint | None = None) -> tuple[MagicBokehNet, Adapters]:
    """The trainable network on CPU in fp32, from the base model's files.

    From scratch: peft adapters with the official init (A Gaussian, B zero), processor adapters with
    zero up-projections, a ControlNet copied from the UNet's encoder with zero convs. With ``init``
    (``lora.pkl`` or a trained folder): ranks must match the config; targets and weights come from it.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet = UNet2DConditionModel.from_pretrained(str(base_files.root), subfolder="unet", torch_dtype=torch.float32)
        vae = AutoencoderKL.from_pretrained(str(base_files.root), subfolder="vae", torch_dtype=torch.float32)
    scheduler_config = json.loads(base_files.scheduler_config.read_text())
    return build_net_from_modules(config, unet, vae, scheduler_config, init=init)


def build_net_from_modules(
    config: Config, unet: nn.Module, vae: nn.Module, scheduler_config: dict[str, Any], *,
    init: MagicBokehCheckpoint | None = None,
) -> tuple[MagicBokehNet, Adapters]:
    """:func:`build_net` on stock SD2.1-shaped ``unet`` / ``vae`` (modified in place), e.g. random
    full-size networks for benchmarks."""
    m = config.model
    # 1. base networks, patched exactly as the backend patches them
    patch_unet(unet)
    alpha, timestep, clip = alpha_prod_at_last_step(scheduler_config)
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    consts = OneStepConstants(timestep, alpha, clip, float(vae.config.scaling_factor), vae_factor)

    # 2. ControlNet initialised from the UNet (encoder copied, new layers default/zero-initialised)
    cond_channels = m.conditioning_embedding_out_channels
    if init is not None:  # the checkpoint's ControlNet fixes the widths
        layout = conditioning_layout(init.controlnet_state_dict).get("conditioning_embedding_out_channels")
        if layout is not None and cond_channels is not None and list(layout) != list(cond_channels):
            raise MagicBokehError(
                f"model.conditioning_embedding_out_channels={cond_channels} but init_from's ControlNet "
                f"has {list(layout)}; remove the key or set it to {list(layout)}."
            )
        cond_channels = list(layout) if layout is not None else cond_channels
    if cond_channels is None:
        cond_channels = [16, 32, 96, 256] if vae_factor == 8 else None
    if cond_channels is None or 2 ** (len(cond_channels) - 1) != vae_factor:
        raise MagicBokehError(
            f"model.conditioning_embedding_out_channels={cond_channels} downsamples by "
            f"{2 ** (len(cond_channels or [0]) - 1)} but the VAE by {vae_factor}; give {int(vae_factor).bit_length()} widths."
        )
    cn_config = FocusControlNet.config_from_unet(unet.config, conditioning_embedding_out_channels=tuple(cond_channels))
    controlnet = FocusControlNet.from_config(cn_config)
    result = controlnet.load_state_dict(unet.state_dict(), strict=False)
    bad = [k for k in result.missing_keys if not k.startswith(_CONTROLNET_NEW)]
    if bad:
        raise MagicBokehError(f"the ControlNet could not be initialised from the UNet: missing {bad[:5]}.")
    set_plain_processors(controlnet, m.attention)

    # 3. adapters: targets by the official rules (or from the checkpoint), then the processors
    if init is not None:
        for key, have in (("rank_unet", init.rank_unet), ("rank_vae", init.rank_vae), ("rank_attn", init.rank_attn)):
            if getattr(m, key) != have:
                raise MagicBokehError(
                    f"model.{key}={getattr(m, key)} but init_from has rank {have}; set model.{key}={have}."
                )
        names = {n for n, _ in unet.named_modules()}
        enc = [t for t in dict.fromkeys(init.unet_encoder_modules) if t in names]
        dec = [t for t in dict.fromkeys(init.unet_decoder_modules) if t in names]
        vae_names = {n for n, _ in vae.named_modules()}
        vae_targets = [t for t in dict.fromkeys(init.vae_modules) if t in vae_names]
    else:
        enc, dec, _others = official_unet_lora_targets(unet)
        vae_targets = list(dict.fromkeys(official_vae_lora_targets(vae)))
    adapters = Adapters(m.rank_unet, m.rank_vae, m.rank_attn, enc, dec, vae_targets)
    install_processors(unet, rank=m.rank_attn, kernel=m.attention)
    with torch.no_grad():  # official training init of the processor adapters: up-projection zero
        for name, p in unet.named_parameters():
            if ".processor." in name and name.endswith(".1.weight"):
                p.zero_()
    add_adapters(unet, vae, adapters)
    net = MagicBokehNet(unet, controlnet, vae, consts)
    if init is not None:
        load_trained(net, init, source="init_from")
    net.requires_grad_(False)
    return net, adapters


def add_adapters(unet: nn.Module, vae: nn.Module, adapters: Adapters) -> None:
    """peft adapters as the official code creates them (Gaussian init, alpha 8)."""
    from peft import LoraConfig

    def config(rank: int, targets: list[str]) -> LoraConfig:
        return LoraConfig(r=rank, lora_alpha=PEFT_DEFAULT_ALPHA, init_lora_weights="gaussian", target_modules=targets)

    with warnings.catch_warnings():  # peft notes a second adapter on one model; intended
        warnings.simplefilter("ignore", UserWarning)
        unet.add_adapter(config(adapters.rank_unet, adapters.unet_encoder), UNET_ENCODER_ADAPTER)
        unet.add_adapter(config(adapters.rank_unet, adapters.unet_decoder), UNET_DECODER_ADAPTER)
        unet.set_adapter([UNET_ENCODER_ADAPTER, UNET_DECODER_ADAPTER])
        vae.add_adapter(config(adapters.rank_vae, adapters.vae), VAE_ADAPTER)
        vae.set_adapter(VAE_ADAPTER)


# ---------------------------------------------------------------------------------------------
# Parameter sets


def part_parameters(net: MagicBokehNet) -> dict[str, dict[str, nn.Parameter]]:
    """Trainable parts by name (full ``net`` parameter names): ``unet_lora``, ``conv_in``,
    ``vae_lora``, ``controlnet``, ``attn_lora``."""
    parts: dict[str, dict[str, nn.Parameter]] = {k: {} for k in ("unet_lora", "conv_in", "vae_lora", "controlnet", "attn_lora")}
    for name, p in net.named_parameters():
        if name.startswith("unet."):
            if ".processor." in name:
                parts["attn_lora"][name] = p
            elif "lora_" in name:
                parts["unet_lora"][name] = p
            elif name.startswith("unet.conv_in.base_layer."):
                parts["conv_in"][name] = p
        elif name.startswith("vae.") and "lora_" in name:
            parts["vae_lora"][name] = p
        elif name.startswith("controlnet."):
            parts["controlnet"][name] = p
    return parts


#: Parts trained in each phase.
PHASE_PARTS = {
    "sr_pretrain": ("vae_lora", "unet_lora", "conv_in"),
    "bokeh": ("controlnet", "attn_lora"),
    "isr": ("unet_lora",),
}


def phase_parameters(net: MagicBokehNet) -> dict[str, dict[str, nn.Parameter]]:
    """``{phase: {name: parameter}}`` for the three phases."""
    parts = part_parameters(net)
    return {phase: {n: p for part in PHASE_PARTS[phase] for n, p in parts[part].items()} for phase in PHASES}


def trainable_parameters(net: MagicBokehNet) -> dict[str, nn.Parameter]:
    """Union of every phase's parameters (what a checkpoint stores)."""
    out: dict[str, nn.Parameter] = {}
    for params in phase_parameters(net).values():
        out.update(params)
    return out


def cast_frozen(net: MagicBokehNet, trainable: set[str], dtype: torch.dtype) -> int:
    """Store every parameter not in ``trainable`` in ``dtype`` (bf16/fp16 under mixed precision).

    The frozen base weights (UNet, VAE) are only read, and autocast computes in that dtype anyway,
    so this halves their memory without changing the maths. Returns the number of cast tensors.
    """
    n = 0
    for name, p in net.named_parameters():
        if name not in trainable and p.dtype != dtype:
            p.data = p.data.to(dtype)
            n += 1
    return n


def set_trainable(net: MagicBokehNet, names: set[str]) -> None:
    """``requires_grad`` on exactly the named parameters."""
    for name, p in net.named_parameters():
        p.requires_grad_(name in names)


# ---------------------------------------------------------------------------------------------
# Export / import


def export_checkpoint(net: MagicBokehNet, adapters: Adapters, overrides: dict[str, torch.Tensor] | None = None) -> MagicBokehCheckpoint:
    """The trained parts as a ``MagicBokehCheckpoint`` (official key names, unmerged LoRA).

    Args:
        overrides: ``net`` parameter name → tensor to store instead (EMA weights).
    """
    overrides = overrides or {}

    def value(full: str, p: torch.Tensor) -> torch.Tensor:
        return overrides.get(full, p).detach().float().cpu().clone()

    parts = part_parameters(net)
    unet = {n[len("unet."):]: value(n, p) for n, p in {**parts["unet_lora"], **parts["conv_in"]}.items()}
    vae = {n[len("vae."):]: value(n, p) for n, p in parts["vae_lora"].items()}
    attn = {n[len("unet."):]: value(n, p) for n, p in parts["attn_lora"].items()}
    controlnet_params = {n[len("controlnet."):]: value(n, p) for n, p in parts["controlnet"].items()}
    controlnet = {k: controlnet_params.get(k, v.detach().float().cpu().clone()) for k, v in net.controlnet.state_dict().items()}
    return MagicBokehCheckpoint(
        rank_unet=adapters.rank_unet,
        unet_encoder_modules=list(adapters.unet_encoder),
        unet_decoder_modules=list(adapters.unet_decoder),
        state_dict_unet=unet,
        rank_vae=adapters.rank_vae,
        vae_modules=list(adapters.vae),
        state_dict_vae=vae,
        controlnet_state_dict=controlnet,
        controlnet_config={k: v for k, v in dict(net.controlnet.config).items() if not k.startswith("_")},
        rank_attn=adapters.rank_attn,
        processor_state_dict=attn,
    )


def trained_tensors(net: MagicBokehNet, ckpt: MagicBokehCheckpoint, *, source: str) -> dict[str, torch.Tensor]:
    """``net`` parameter name → the checkpoint's tensor, for every trainable parameter.

    Raises:
        MagicBokehError: a tensor is missing or has the wrong shape, or the ControlNet has keys this
            network lacks (other than the removed mid block / cross-attention).
    """
    from ..diffusion.loading import is_removed_module

    parts = part_parameters(net)
    wanted: list[tuple[str, dict[str, torch.Tensor], str]] = []
    for n in list(parts["unet_lora"]) + list(parts["conv_in"]):
        wanted.append((n, ckpt.state_dict_unet, n[len("unet."):]))
    for n in parts["vae_lora"]:
        wanted.append((n, ckpt.state_dict_vae, n[len("vae."):]))
    for n in parts["attn_lora"]:
        wanted.append((n, ckpt.processor_state_dict, n[len("unet."):]))
    for n in parts["controlnet"]:
        wanted.append((n, ckpt.controlnet_state_dict, n[len("controlnet."):]))
    missing = [key for _, sd, key in wanted if key not in sd]
    if missing:
        raise MagicBokehError(
            f"{source} lacks {len(missing)} trained tensor(s) this network needs, e.g. {missing[:3]}; "
            "it was trained with other LoRA targets, ranks or ControlNet layout."
        )
    own = set(net.controlnet.state_dict())
    extra = [k for k in ckpt.controlnet_state_dict if k not in own and not is_removed_module(k)]
    if extra:
        raise MagicBokehError(f"{source}: the ControlNet has {len(extra)} unexpected tensor(s), e.g. {extra[:3]}.")
    params = dict(net.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for full, sd, key in wanted:
        if tuple(sd[key].shape) != tuple(params[full].shape):
            raise MagicBokehError(
                f"{source}: {key} has shape {list(sd[key].shape)} but the network needs "
                f"{list(params[full].shape)}; the ranks or the base model differ."
            )
        out[full] = sd[key]
    return out


def load_trained(net: MagicBokehNet, ckpt: MagicBokehCheckpoint, *, source: str) -> None:
    """Copy a checkpoint's trained parts into ``net`` in place (parameter objects are kept)."""
    tensors = trained_tensors(net, ckpt, source=source)
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].dtype))


def read_init(path: str | Path) -> MagicBokehCheckpoint:
    """``lora.pkl`` or a trained folder, for ``init_from``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MagicBokehError(f"init_from {path} does not exist; pass a lora.pkl or a trained DIR/final.")
    return read_checkpoint(path)


def enable_gradient_checkpointing(net: MagicBokehNet) -> None:
    """Recompute activations in the backward pass (UNet, ControlNet, VAE)."""
    net.unet.enable_gradient_checkpointing()
    net.controlnet.enable_gradient_checkpointing()
    net.vae.enable_gradient_checkpointing()


def count(params: dict[str, Any]) -> int:
    return sum(p.numel() for p in params.values())


__all__ = [
    "Adapters",
    "MagicBokehNet",
    "PHASE_PARTS",
    "build_net",
    "build_net_from_modules",
    "cast_frozen",
    "enable_gradient_checkpointing",
    "export_checkpoint",
    "load_trained",
    "trained_tensors",
    "part_parameters",
    "phase_parameters",
    "read_init",
    "set_trainable",
    "trainable_parameters",
]
