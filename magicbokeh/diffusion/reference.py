"""A plain re-implementation of the official per-tile algorithm, for tests and benchmarks only.

It follows the official code path as the spec describes it (§1.5, §1.6, §3, §4.6) and shares no
inference code with ``pipeline.py``:

* peft adapters installed and left **unmerged** (``default_encoder`` / ``default_decoder``),
  the fine-tuned ``conv_in`` copied in, weights copied by name;
* a stock diffusers ``ControlNetModel`` with the mid block deleted (its mid output is ignored);
* plain-object processors with explicit ``baddbmm`` scores and an fp32 ``-100`` mask table keyed by
  token count, repeated per head, set from outside before each tile;
* an optional text encoder run per tile (its output reaches no layer);
* one tile at a time, ``DDPMScheduler.step`` for x0, official ramp blending and AdaIN.

Needs peft (a test/benchmark dependency). Not used by the backend.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import MagicBokehCheckpoint


# The training-time target rules (spec §5) live in lora.py; re-exported here for the tests.
from .lora import (  # noqa: E402
    UNET_LORA_PATTERNS,
    VAE_LORA_PATTERNS,
    official_unet_lora_targets,
    official_vae_lora_targets,
)


class OfficialMaskedProcessor:
    """The official ``LoRAAttnMaskProcessor`` maths (spec §3.2–3.4), batch 1."""

    def __init__(self, hidden_size: int, rank: int, device, dtype):
        self.scale = 1.0 / rank  # lora_alpha = 1.0
        self.masks: dict[int, torch.Tensor] = {}

        def lora() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(hidden_size, rank, bias=False), nn.Linear(rank, hidden_size, bias=False)
            ).to(device=device, dtype=dtype)

        self.to_q_lora, self.to_k_lora, self.to_v_lora, self.to_out_lora = lora(), lora(), lora(), lora()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        x = hidden_states
        b, n, _ = x.shape
        if b != 1:
            raise ValueError("the official processor supports batch 1 only")
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        # plain pass: explicit scores, no mask
        qh, kh, vh = attn.head_to_batch_dim(q), attn.head_to_batch_dim(k), attn.head_to_batch_dim(v)
        probs = attn.get_attention_scores(qh, kh, None)
        plain = attn.batch_to_head_dim(torch.bmm(probs, vh))
        # masked pass with the processor LoRA and the fp32 -100 mask repeated per head
        s = self.scale
        q2 = attn.head_to_batch_dim(q + s * self.to_q_lora(x))
        k2 = attn.head_to_batch_dim(k + s * self.to_k_lora(x))
        v2 = attn.head_to_batch_dim(v + s * self.to_v_lora(x))
        empty = torch.empty(q2.shape[0], n, n, dtype=q2.dtype, device=q2.device)
        scores = torch.baddbmm(empty, q2, k2.transpose(-1, -2), beta=0, alpha=attn.scale)
        scores = scores + self.masks[n].repeat(attn.heads, 1, 1)
        masked = attn.batch_to_head_dim(torch.bmm(scores.softmax(dim=-1).to(v2.dtype), v2))
        out = attn.to_out[0](plain) + s * self.to_out_lora(masked)
        return attn.to_out[1](out)


def official_mask_table(c_msk: torch.Tensor, sample_size: int) -> dict[int, torch.Tensor]:
    """Mask table keyed by token count from a ``(1, 1, T, T)`` in-focus mask in {0, 1} (§3.4)."""
    table = {}
    for r in range(4):
        res = sample_size // 2**r
        m = F.interpolate(c_msk.float(), size=(res, res), mode="nearest").flatten(1)  # (1, N)
        diff = m[:, None, :] - m[:, :, None]
        table[res * res] = torch.where(diff != 0, -100.0, 0.0).float()
    return table


@dataclass
class OfficialStyleModel:
    unet: Any
    controlnet: Any
    vae: Any
    scheduler: Any
    processors: list[OfficialMaskedProcessor]
    text_encoder: Callable[[], torch.Tensor] | None
    device: torch.device
    dtype: torch.dtype


def build_official_style(
    unet,
    vae,
    ckpt: MagicBokehCheckpoint,
    scheduler_config: dict,
    *,
    text_encoder: Callable[[], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> OfficialStyleModel:
    """Official loading order (§4.6) on stock SD2.1 ``unet``/``vae`` (modified in place)."""
    from diffusers import ControlNetModel, DDPMScheduler
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.attention_processor import AttnProcessor2_0
    from peft import LoraConfig

    device = torch.device(device)
    # patched UNet: no mid block, no attn2/norm2 anywhere
    unet.mid_block = None
    for m in unet.modules():
        if isinstance(m, BasicTransformerBlock):
            m.attn2 = None
            m.norm2 = None
    names = {n for n, _ in unet.named_modules()}
    for adapter, targets in (
        ("default_encoder", ckpt.unet_encoder_modules),
        ("default_decoder", ckpt.unet_decoder_modules),
    ):
        present = sorted({t for t in targets if t in names})
        with warnings.catch_warnings():  # peft notes the second adapter; the official code does this
            warnings.simplefilter("ignore", UserWarning)
            unet.add_adapter(LoraConfig(r=ckpt.rank_unet, init_lora_weights="gaussian", target_modules=present), adapter)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora" in n or "conv_in" in n:
                p.copy_(ckpt.state_dict_unet[n])
    unet.set_adapter(["default_encoder", "default_decoder"])

    vae_names = {n for n, _ in vae.named_modules()}
    vae_targets = sorted({t for t in ckpt.vae_modules if t in vae_names})
    vae.add_adapter(LoraConfig(r=ckpt.rank_vae, init_lora_weights="gaussian", target_modules=vae_targets), "default_encoder")
    with torch.no_grad():
        for n, p in vae.named_parameters():
            if "lora" in n:
                p.copy_(ckpt.state_dict_vae[n])
    vae.set_adapter("default_encoder")

    # stock ControlNet, mid block deleted after construction (its mid residual is never used)
    cn_cfg = {k: unet.config[k] for k in (
        "in_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "block_out_channels",
        "layers_per_block", "downsample_padding", "act_fn", "norm_num_groups", "norm_eps",
        "cross_attention_dim", "attention_head_dim", "use_linear_projection", "upcast_attention",
    )}  # fmt: skip
    for key in ("conditioning_embedding_out_channels", "conditioning_channels"):
        if key in ckpt.controlnet_config:
            cn_cfg[key] = tuple(ckpt.controlnet_config[key]) if isinstance(ckpt.controlnet_config[key], list) else ckpt.controlnet_config[key]
    controlnet = ControlNetModel(**cn_cfg, mid_block_type="UNetMidBlock2D")
    controlnet.mid_block = None
    for m in controlnet.modules():
        if isinstance(m, BasicTransformerBlock):
            m.attn2 = None
            m.norm2 = None
    result = controlnet.load_state_dict(ckpt.controlnet_state_dict, strict=False)
    bad = [k for k in result.missing_keys if not k.startswith("controlnet_mid_block.")]
    if bad or result.unexpected_keys:
        raise ValueError(f"reference ControlNet mismatch: missing {bad}, unexpected {result.unexpected_keys}")

    for model in (unet, vae, controlnet):
        model.to(device=device, dtype=dtype).eval().requires_grad_(False)

    procs: dict[str, Any] = {}
    masked: list[OfficialMaskedProcessor] = []
    modules = dict(unet.named_modules())
    for name in unet.attn_processors:
        if "up_blocks" in name and name.endswith("attn1.processor"):
            attn = modules[name[: -len(".processor")]]
            proc = OfficialMaskedProcessor(attn.to_q.base_layer.in_features, ckpt.rank_attn, device, dtype)
            with torch.no_grad():
                for attr in ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora"):
                    for i in (0, 1):
                        getattr(proc, attr)[i].weight.copy_(ckpt.processor_state_dict[f"{name}.{attr}.{i}.weight"])
            procs[name] = proc
            masked.append(proc)
        else:
            procs[name] = AttnProcessor2_0()
    unet.set_attn_processor(procs)

    import inspect

    allowed = set(inspect.signature(DDPMScheduler.__init__).parameters)  # PNDM keys dropped
    scheduler = DDPMScheduler.from_config({k: v for k, v in scheduler_config.items() if k in allowed})
    # diffusers 0.25 stepped from 999 to 999 - 1000 = -1 after set_timesteps(1); current diffusers
    # looks the step up in `timesteps` instead, so the single step is given explicitly.
    scheduler.set_timesteps(timesteps=[999])
    return OfficialStyleModel(unet, controlnet, vae, scheduler, masked, text_encoder, device, dtype)


@torch.no_grad()
def official_tile(
    model: OfficialStyleModel, lq: torch.Tensor, c_depth: torch.Tensor, c_msk: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """``model_test.forward`` (§1.6) for one tile; ``noise`` replaces the unseeded posterior draw.

    Args:
        lq: ``(1, 3, T, T)`` in [−1, 1]; c_depth: ``(1, 1, T, T)`` defocus ×2 − 1;
        c_msk: ``(1, 1, T, T)`` in {−1, 1}; noise: ``(1, 4, T/8, T/8)`` standard normal.
    Returns: ``(1, 3, T, T)`` float32 in [−1, 1].
    """
    dt, dev = model.dtype, model.device
    c_msk = (c_msk + 1) / 2
    text = model.text_encoder() if model.text_encoder is not None else None  # computed, never used
    posterior = model.vae.encode(lq.to(dev, dt)).latent_dist
    z = (posterior.mean + posterior.std * noise.to(dev, dt)) * model.vae.config.scaling_factor
    cond = c_depth.to(dev, dt).repeat(1, 3, 1, 1)
    table = official_mask_table(c_msk.to(dev), model.unet.config.sample_size)
    for proc in model.processors:
        proc.masks = table
    t = torch.tensor([999], device=dev, dtype=torch.long)
    down, _mid = model.controlnet(z, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
    eps = model.unet(
        z, t, encoder_hidden_states=text, down_block_additional_residuals=down,
        mid_block_additional_residual=torch.zeros_like(_mid), return_dict=False,
    )[0]  # fmt: skip
    x0 = model.scheduler.step(eps, 999, z).prev_sample
    return model.vae.decode(x0 / model.vae.config.scaling_factor).sample.clamp(-1, 1).float()


def official_render(
    model: OfficialStyleModel,
    image: np.ndarray,
    defocus: np.ndarray,
    noise_fn: Callable[[int, int], torch.Tensor],
    *,
    tile: int = 512,
) -> np.ndarray:
    """Official tiling + blending (§1.5), returning ``(H, W, 3)`` float32 in [−1, 1] (no colour fix).

    ``noise_fn(top, left)`` gives each tile's ``(1, 4, T/8, T/8)`` posterior noise.
    """
    h, w = defocus.shape
    stride = tile // 2
    lq = torch.from_numpy(image.transpose(2, 0, 1).copy())[None] * 2 - 1
    disp = torch.from_numpy(defocus.copy())[None, None]
    rows = list(range(0, h - tile + 1, stride)) + ([h - tile] if h % stride else [])
    cols = list(range(0, w - tile + 1, stride)) + ([w - tile] if w % stride else [])
    acc = torch.zeros(1, 3, h, w)
    wsum = torch.zeros(1, 1, h, w)
    for i in rows:
        for j in cols:
            d = disp[:, :, i : i + tile, j : j + tile]
            msk = 1 - (d > 0.1).float()
            out = official_tile(model, lq[:, :, i : i + tile, j : j + tile], d * 2 - 1, msk * 2 - 1, noise_fn(i, j))
            wv = torch.ones(tile)
            wh = torch.ones(tile)
            if i < h - tile:
                wv[-stride:] = torch.linspace(1, 0, stride)
            if i > 0:
                wv[:stride] = torch.linspace(0, 1, stride)
            if j < w - tile:
                wh[-stride:] = torch.linspace(1, 0, stride)
            if j > 0:
                wh[:stride] = torch.linspace(0, 1, stride)
            weight = (wv[:, None] * wh[None, :])[None, None]
            acc[:, :, i : i + tile, j : j + tile] += out.cpu() * weight
            wsum[:, :, i : i + tile, j : j + tile] += weight
    out = torch.where(wsum > 0, acc / wsum, acc)
    return out[0].permute(1, 2, 0).numpy()


def official_adain(output01: np.ndarray, input01: np.ndarray) -> np.ndarray:
    """Per-channel AdaIN (unbiased variance + 1e-5), clamped to [0, 1]; (H, W, 3) arrays."""
    t = torch.from_numpy(output01.transpose(2, 0, 1).copy())[None].reshape(1, 3, -1)
    s = torch.from_numpy(input01.transpose(2, 0, 1).copy())[None].reshape(1, 3, -1)
    t_mean, t_std = t.mean(2, keepdim=True), (t.var(2, keepdim=True) + 1e-5).sqrt()
    s_mean, s_std = s.mean(2, keepdim=True), (s.var(2, keepdim=True) + 1e-5).sqrt()
    out = ((t - t_mean) / t_std * s_std + s_mean).clamp(0, 1)
    return out.reshape(3, *output01.shape[:2]).permute(1, 2, 0).numpy()


__all__ = [
    "OfficialMaskedProcessor",
    "UNET_LORA_PATTERNS",
    "VAE_LORA_PATTERNS",
    "official_unet_lora_targets",
    "official_vae_lora_targets",
    "OfficialStyleModel",
    "build_official_style",
    "official_adain",
    "official_mask_table",
    "official_render",
    "official_tile",
]
