"""Merge the checkpoint's peft LoRA into the base weights (spec §4.3), so inference needs no peft.

peft computes ``base(x) + (alpha / r) · B(A(x))`` with ``lora_alpha`` = 8 (peft's default, the
official code passes none). For a Linear that is ``W + (8/r) · B A``; for a Conv2d, A is a conv with
the base kernel/stride/padding and B a 1×1 conv, so ``W + (8/r) · reshape(B[:, :, 0, 0] · A)``.
Both are exact rewrites of the unmerged forward.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn

from ..errors import MagicBokehError, preview_names

logger = logging.getLogger(__name__)

#: peft's default ``lora_alpha``; the official code does not pass one.
PEFT_DEFAULT_ALPHA = 8.0


# Spec §5.1 / §5.2: the training-time rules that produced the checkpoint's LoRA target lists.
UNET_LORA_PATTERNS = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
                      "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj")  # fmt: skip
VAE_LORA_PATTERNS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0")


def official_unet_lora_targets(patched_unet) -> tuple[list[str], list[str], list[str]]:
    """(encoder, decoder, others) module lists from the patched UNet's parameter names (§5.1).

    The official processors were plain objects, so their adapters (``….processor.to_q_lora.…``,
    which the ``to_q`` pattern would match) are skipped here, as is any existing peft wrapper.
    """
    enc, dec, others = [], [], []
    for name, _ in patched_unet.named_parameters():
        if "bias" in name or "norm" in name or ".processor." in name or "lora_" in name:
            continue
        for pattern in UNET_LORA_PATTERNS:
            if pattern in name:
                module = name.replace(".weight", "")
                if "down_blocks" in name or "conv_in" in name:
                    enc.append(module)
                elif "up_blocks" in name or "conv_out" in name:
                    dec.append(module)
                else:
                    others.append(module)
                break
    return enc, dec, others


def official_vae_lora_targets(vae) -> list[str]:
    """VAE encoder + ``quant_conv`` targets, one entry per matching pattern (duplicates kept, §5.2)."""
    out = []
    for name, _ in vae.named_parameters():
        if "bias" in name or "norm" in name:
            continue
        for pattern in VAE_LORA_PATTERNS:
            if pattern in name and "encoder" in name:
                out.append(name.replace(".weight", ""))
            elif pattern in name and "quant_conv" in name and "post_quant_conv" not in name:
                out.append(name.replace(".weight", ""))
    return out


@dataclass
class MergeReport:
    """What a merge did: merged module names, targets absent from the model, unused keys."""

    merged: list[str] = field(default_factory=list)
    absent_targets: list[str] = field(default_factory=list)
    unused_keys: list[str] = field(default_factory=list)


def match_targets(model: nn.Module, targets: Iterable[str]) -> tuple[dict[str, nn.Module], list[str]]:
    """Modules of ``model`` that peft would wrap for ``targets``, and targets matching nothing.

    peft matches a module when its name equals a target or ends with ``"." + target``. The
    official lists hold full dotted names, so each match is exact; entries for modules the
    MagicBokeh networks lack (``attn2``, ``mid_block``) match nothing and are reported.
    """
    wanted = list(dict.fromkeys(targets))  # de-duplicate, keep order (the VAE list repeats names)
    wanted_set = set(wanted)
    hits: set[str] = set()
    matched: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not name:
            continue
        parts = name.split(".")
        for i in range(len(parts)):
            suffix = ".".join(parts[i:])
            if suffix in wanted_set:
                matched[name] = module
                hits.add(suffix)
    return matched, [t for t in wanted if t not in hits]


def lora_delta(a: torch.Tensor, b: torch.Tensor, weight_shape: torch.Size, scale: float) -> torch.Tensor:
    """``scale · B A`` reshaped to the base weight (Linear ``[out, in]`` or Conv ``[out, in, kh, kw]``)."""
    r = a.shape[0]
    delta = b.reshape(b.shape[0], r).float() @ a.reshape(r, -1).float()
    return (scale * delta).reshape(weight_shape)


def merge_lora(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    targets: Iterable[str],
    *,
    adapter: str,
    rank: int,
    lora_alpha: float = PEFT_DEFAULT_ALPHA,
    what: str = "model",
    source: str = "state_dict",
) -> MergeReport:
    """Add ``(lora_alpha / rank) · B A`` of every target into its base weight, in place.

    Args:
        model: the network (base weights loaded).
        state_dict: peft-named tensors, e.g. ``conv_in.lora_A.default_encoder.weight``.
        targets: module names the adapter was created with.
        adapter: peft adapter name (``default_encoder`` / ``default_decoder``).
        rank: the adapter rank ``r``.
        what, source: names used in error messages.

    Raises:
        MagicBokehError: listing every missing key, or the first tensor of the wrong shape.
    """
    if not isinstance(rank, int) or rank <= 0:
        raise MagicBokehError(f"the {what} LoRA rank must be a positive integer; got {rank!r}.")
    scale = lora_alpha / rank
    matched, absent = match_targets(model, targets)
    report = MergeReport(absent_targets=absent)
    if absent:
        logger.debug("%s LoRA targets not present in this network (ignored): %s", what, absent)

    missing: list[str] = []
    used: set[str] = set()
    plan: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    for name, module in matched.items():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise MagicBokehError(
                f"{source} targets {name!r} ({type(module).__name__}) for LoRA, but only Linear and "
                "Conv2d layers can carry one; the checkpoint does not match this base model."
            )
        key_a, key_b = f"{name}.lora_A.{adapter}.weight", f"{name}.lora_B.{adapter}.weight"
        absent_keys = [k for k in (key_a, key_b) if k not in state_dict]
        if absent_keys:
            missing.extend(absent_keys)
            continue
        a, b = state_dict[key_a], state_dict[key_b]
        _check_shapes(module, a, b, rank, key_a, key_b, source)
        plan.append((name, module, a, b))
        used.update((key_a, key_b))
    if missing:
        raise MagicBokehError(
            f"{source} is missing {len(missing)} LoRA tensor(s) for the {what}: "
            f"{preview_names(missing)}. The checkpoint is incomplete or does not match the base model."
        )

    with torch.no_grad():
        for name, module, a, b in plan:
            w = module.weight
            merged = w.float() + lora_delta(a, b, w.shape, scale).to(w.device)
            w.copy_(merged.to(w.dtype))
            report.merged.append(name)
    report.unused_keys = sorted(k for k in state_dict if ".lora_" in k and k not in used)
    if report.unused_keys:
        logger.debug("%s: %d LoRA tensors for absent modules ignored", what, len(report.unused_keys))
    return report


def _check_shapes(module, a, b, rank, key_a, key_b, source) -> None:
    if isinstance(module, nn.Linear):
        want_a = (rank, module.in_features)
        want_b = (module.out_features, rank)
    else:
        kh, kw = module.kernel_size
        want_a = (rank, module.in_channels // module.groups, kh, kw)
        want_b = (module.out_channels, rank, 1, 1)
    for key, tensor, want in ((key_a, a, want_a), (key_b, b, want_b)):
        if not isinstance(tensor, torch.Tensor):
            raise MagicBokehError(f"{source}[{key!r}] is a {type(tensor).__name__}, not a tensor.")
        if tuple(tensor.shape) != want:
            raise MagicBokehError(
                f"{source}[{key!r}] has shape {list(tensor.shape)} but the layer needs {list(want)} "
                f"(rank {rank}); the checkpoint does not match this base model."
            )



__all__ = [
    "MergeReport",
    "PEFT_DEFAULT_ALPHA",
    "UNET_LORA_PATTERNS",
    "VAE_LORA_PATTERNS",
    "lora_delta",
    "match_targets",
    "merge_lora",
    "official_unet_lora_targets",
    "official_vae_lora_targets",
]
