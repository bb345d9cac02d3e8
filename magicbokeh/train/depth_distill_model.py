"""Models of the DA-depth distillation: the Depth Anything V2 teacher, its student copy, feature taps."""

from __future__ import annotations

from typing import Any

from ..errors import MagicBokehError


def resolve_teacher(spec: str) -> str:
    """A hub id or local transformers folder for ``--teacher`` (names, folders, hub ids, ``.pth``)."""
    from ..depth.depth_anything import resolve_depth_source

    return resolve_depth_source(spec)


def load_teacher(spec: str) -> tuple[Any, str]:
    """``(model, resolved source)``: the Depth Anything V2 model of ``--teacher`` in float32, eval mode."""
    import torch
    from transformers import AutoModelForDepthEstimation

    resolved = resolve_teacher(spec)
    try:
        model = AutoModelForDepthEstimation.from_pretrained(resolved, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MagicBokehError(
            f"cannot load the teacher {spec!r} ({first}); pass a Depth Anything V2 transformers folder, "
            "hub id, .pth or 'dadepth'."
        ) from None
    if not hasattr(model, "backbone") or not hasattr(model.backbone, "embeddings"):
        raise MagicBokehError(f"--teacher {spec}: {type(model).__name__} is not a Depth Anything (DINOv2) model.")
    return model.eval(), resolved


def install_upstream_position_embeddings(model: Any) -> None:
    """Make the model interpolate position embeddings as the upstream Depth Anything code does."""
    from ..depth.depth_anything import apply_upstream_position_embeddings

    apply_upstream_position_embeddings(model)


def freeze_unused_parameters(model: Any, *, size: int) -> list[str]:
    """Set ``requires_grad=False`` on parameters that no forward pass uses; returns their names.

    DDP (multi-GPU) fails on trainable parameters that never receive a gradient. In Depth Anything
    these are the DINOv2 ``mask_token`` (only used for masked-image modelling) and the first residual
    unit of the deepest fusion block (it has no skip input). One forward/backward pass on a
    ``size`` x ``size`` black image finds them; AdamW would skip them anyway (no gradient), so freezing
    them changes no result.
    """
    import torch

    model.zero_grad(set_to_none=True)
    x = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
    model(pixel_values=x).predicted_depth.float().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, param in model.named_parameters():
        if name in unused:
            param.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    return unused


class FeatureTap:
    """Keeps the feature maps a Depth Anything backbone hands to the DPT neck on its last call.

    A forward hook on ``model.backbone`` (works through DDP wrappers, which call the same module).
    ``maps`` is a tuple of ``(B, 1 + N, C)`` token tensors (``reshape_hidden_states=False``) or
    ``(B, C, h, w)`` maps.
    """

    def __init__(self, backbone: Any) -> None:
        self.maps: tuple[Any, ...] = ()
        self._handle = backbone.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: Any, output: Any) -> None:
        self.maps = tuple(output.feature_maps)

    def pop(self) -> tuple[Any, ...]:
        maps, self.maps = self.maps, ()
        if not maps:
            raise RuntimeError("the backbone hook saw no forward pass")
        return maps

    def remove(self) -> None:
        self._handle.remove()


def patch_size(model: Any) -> int:
    """The ViT patch side in pixels of a Depth Anything model (14 for DINOv2)."""
    config = model.config
    return int(getattr(config, "patch_size", None) or config.backbone_config.patch_size)


__all__ = ["FeatureTap", "freeze_unused_parameters", "install_upstream_position_embeddings", "load_teacher",
           "patch_size", "resolve_teacher"]
