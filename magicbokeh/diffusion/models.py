"""The MagicBokeh networks, rebuilt from current diffusers blocks (spec §2).

* UNet: stock ``UNet2DConditionModel`` (SD2.1-base config) with the mid block removed and every
  cross-attention (``attn2``, ``norm2``) deleted. Stock forward skips cross-attention when
  ``attn2 is None``; a zero mid residual keeps the ControlNet path (spec §2.3).
* ControlNet: ``FocusControlNet``, a copy of the SD2.1 encoder with no mid block and no
  cross-attention, the stock conditioning embedding (3 → 320 channels at 1/8 resolution) and 12
  zero-conv residuals. Its parameter names equal stock ``ControlNetModel`` minus the removed parts,
  so the official weights load strictly.
* VAE: stock ``AutoencoderKL``.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Mapping

import torch
from torch import nn

from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import get_down_block

from .attention import FocusAttnProcessor, PlainAttnProcessor, is_focus_attention

logger = logging.getLogger(__name__)

#: Conditioning embedding widths of SD ControlNets (3 stride-2 convs: 1/8 resolution).
COND_EMBEDDING_CHANNELS: tuple[int, ...] = (16, 32, 96, 256)


def strip_cross_attention(model: nn.Module) -> int:
    """Delete ``attn2`` and ``norm2`` of every transformer block; returns how many blocks changed.

    The official blocks never create them, so their weights must not appear in any state dict.
    Setting the attributes to ``None`` (instead of deleting them) keeps stock ``forward`` working.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, BasicTransformerBlock) and (module.attn2 is not None or module.norm2 is not None):
            module.attn2 = None
            module.norm2 = None
            count += 1
    return count


def patch_unet(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Turn a stock SD UNet into the MagicBokeh UNet in place: no mid block, no cross-attention."""
    unet.mid_block = None
    unet.register_to_config(mid_block_type=None)
    strip_cross_attention(unet)
    return unet


def unet_from_config(config: Mapping[str, Any]) -> UNet2DConditionModel:
    """Build the MagicBokeh UNet (random weights, or meta tensors under ``torch.device("meta")``)."""
    cfg = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    cfg["mid_block_type"] = None  # never build the mid block
    unet = UNet2DConditionModel.from_config(cfg)
    strip_cross_attention(unet)
    return unet


def latent_grids(unet_config: Mapping[str, Any], latent_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Token grid ``(h, w)`` of every UNet resolution level for a latent of size ``latent_hw``."""
    levels = len(unet_config["block_out_channels"])
    h, w = latent_hw
    return [(h >> i, w >> i) for i in range(levels)]


def install_processors(
    unet: UNet2DConditionModel, *, rank: int, kernel: str = "sdpa"
) -> list[str]:
    """Install ``FocusAttnProcessor`` on the up-block self-attentions and plain ones elsewhere.

    Returns the names of the focus-masked processors (9 for SD2.1:
    ``up_blocks.{1,2,3}.attentions.{0,1,2}.transformer_blocks.0.attn1.processor``).
    """
    modules = dict(unet.named_modules())
    processors: dict[str, Any] = {}
    focus_names: list[str] = []
    for name in unet.attn_processors:
        attn = modules[name[: -len(".processor")]]
        if is_focus_attention(name):
            proc = FocusAttnProcessor(attn.to_q.in_features, rank, kernel=kernel)
            # Match the layer's device/dtype (meta when building without weights).
            proc.to(device=attn.to_q.weight.device, dtype=attn.to_q.weight.dtype)
            processors[name] = proc
            focus_names.append(name)
        else:
            processors[name] = PlainAttnProcessor(kernel)
    unet.set_attn_processor(processors)
    if not focus_names:
        raise ValueError("this UNet has no up-block self-attention to mask; is it an SD UNet?")
    return focus_names


def set_plain_processors(model: nn.Module, kernel: str = "sdpa") -> None:
    """Give every ``Attention`` in ``model`` a ``PlainAttnProcessor`` (ControlNet, or tests)."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.set_processor(PlainAttnProcessor(kernel))


class FocusControlNet(ModelMixin, ConfigMixin):
    """SD ControlNet without mid block and without cross-attention (spec §2.2, §2.3).

    ``forward(sample, timestep, condition)`` returns the list of down residuals (12 for SD2.1),
    already passed through their zero convs, as the official ``controlnet(...,
    return_dict=False)`` does. The condition is embedded inside (stock behaviour; the official
    code embeds it outside, which is the same maths).
    """

    _supports_gradient_checkpointing = True  # its diffusers down blocks honour it (training)

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        conditioning_channels: int = 3,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1024,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        attention_head_dim: int | tuple[int, ...] = (5, 10, 20, 20),
        num_attention_heads: int | tuple[int, ...] | None = None,
        use_linear_projection: bool = True,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        conditioning_embedding_out_channels: tuple[int, ...] = COND_EMBEDDING_CHANNELS,
    ):
        super().__init__()
        n = len(down_block_types)
        if len(block_out_channels) != n:
            raise ValueError(
                f"block_out_channels has {len(block_out_channels)} entries but down_block_types has {n}"
            )
        # diffusers' SD configs store the head *count* in attention_head_dim (see ControlNetModel).
        heads = num_attention_heads or attention_head_dim
        heads = (heads,) * n if isinstance(heads, int) else tuple(heads)
        head_dims = (attention_head_dim,) * n if isinstance(attention_head_dim, int) else tuple(attention_head_dim)
        layers_tf = (
            (transformer_layers_per_block,) * n
            if isinstance(transformer_layers_per_block, int)
            else tuple(transformer_layers_per_block)
        )

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        time_embed_dim = block_out_channels[0] * 4
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim, act_fn=act_fn)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=block_out_channels[0],
            block_out_channels=tuple(conditioning_embedding_out_channels),
            conditioning_channels=conditioning_channels,
        )

        self.down_blocks = nn.ModuleList()
        self.controlnet_down_blocks = nn.ModuleList([_zero_conv(block_out_channels[0])])
        out_ch = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            in_ch, out_ch = out_ch, block_out_channels[i]
            final = i == n - 1
            self.down_blocks.append(
                get_down_block(
                    block_type,
                    num_layers=layers_per_block,
                    transformer_layers_per_block=layers_tf[i],
                    in_channels=in_ch,
                    out_channels=out_ch,
                    temb_channels=time_embed_dim,
                    add_downsample=not final,
                    resnet_eps=norm_eps,
                    resnet_act_fn=act_fn,
                    resnet_groups=norm_num_groups,
                    cross_attention_dim=cross_attention_dim,
                    num_attention_heads=heads[i],
                    attention_head_dim=head_dims[i] if head_dims[i] is not None else out_ch,
                    downsample_padding=downsample_padding,
                    use_linear_projection=use_linear_projection,
                    only_cross_attention=False,
                    upcast_attention=upcast_attention,
                    resnet_time_scale_shift=resnet_time_scale_shift,
                )
            )
            for _ in range(layers_per_block + (0 if final else 1)):
                self.controlnet_down_blocks.append(_zero_conv(out_ch))
        strip_cross_attention(self)

    @classmethod
    def config_from_unet(cls, unet_config: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
        """The ControlNet config that ``ControlNetModel.from_unet`` would derive, plus overrides."""
        keys = (
            "in_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "block_out_channels",
            "layers_per_block", "downsample_padding", "act_fn", "norm_num_groups", "norm_eps",
            "cross_attention_dim", "transformer_layers_per_block", "attention_head_dim",
            "num_attention_heads", "use_linear_projection", "upcast_attention",
            "resnet_time_scale_shift",
        )  # fmt: skip
        cfg = {k: unet_config[k] for k in keys if k in unet_config}
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        cfg.update({k: v for k, v in overrides.items() if k in allowed})
        return cfg

    def forward(
        self, sample: torch.Tensor, timestep: int | torch.Tensor, controlnet_cond: torch.Tensor
    ) -> list[torch.Tensor]:
        """Down residuals for the UNet skips.

        Args:
            sample: ``(B, 4, h, w)`` noisy latent (here: the scaled latent of the input tile).
            timestep: diffusion step (999 for MagicBokeh).
            controlnet_cond: ``(B, 3, 8h, 8w)`` condition image (defocus map ×2 − 1, 3 channels).
        """
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.reshape(-1).expand(b) if t.numel() == 1 else t
        emb = self.time_embedding(self.time_proj(t).to(dtype=sample.dtype))

        h = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)
        skips = [h]
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=None)
            else:
                h, res = block(hidden_states=h, temb=emb)
            skips.extend(res)
        return [zero_conv(x) for zero_conv, x in zip(self.controlnet_down_blocks, skips)]


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    if not conv.weight.is_meta:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


def unet_forward(
    unet: UNet2DConditionModel,
    latent: torch.Tensor,
    timestep: int,
    residuals: list[torch.Tensor],
    focus_mask: Any = None,
) -> torch.Tensor:
    """ε prediction of the MagicBokeh UNet with ControlNet residuals and the focus mask.

    A zero mid residual makes stock diffusers treat ``residuals`` as ControlNet residuals (without
    it they are taken as T2I-adapter residuals); with no mid block it adds nothing.
    """
    zero_mid = torch.zeros((), dtype=latent.dtype, device=latent.device)
    return unet(
        latent,
        timestep,
        encoder_hidden_states=None,
        down_block_additional_residuals=residuals,
        mid_block_additional_residual=zero_mid,
        cross_attention_kwargs={"focus_mask": focus_mask},
        return_dict=False,
    )[0]


__all__ = [
    "COND_EMBEDDING_CHANNELS",
    "FocusControlNet",
    "install_processors",
    "latent_grids",
    "patch_unet",
    "set_plain_processors",
    "strip_cross_attention",
    "unet_forward",
    "unet_from_config",
]
