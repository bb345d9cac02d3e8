"""Shared pieces of the diffusion benchmarks: full-size SD2.1 configs with seeded random weights,
a synthetic checkpoint in the official layout, and memory helpers. No downloads.

Imported by ``bench_diffusion_cpu.py`` and ``bench_diffusion_gpu.py`` (run from the repo root).
"""

from __future__ import annotations

import gc
import resource
import time
from pathlib import Path
from typing import Any

import torch

# spec §2.1: SD2.1-base component configs
SD21_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, layers_per_block=2,
    use_linear_projection=True, upcast_attention=False, norm_num_groups=32, norm_eps=1e-5,
    flip_sin_to_cos=True, freq_shift=0, act_fn="silu",
)  # fmt: skip
SD21_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=768,
    scaling_factor=0.18215, force_upcast=True,
)  # fmt: skip
SD21_SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "trained_betas": None,
}  # fmt: skip
# SD2.1 text encoder (OpenCLIP ViT-H, 23 layers as shipped in the diffusers repo)
SD21_TEXT_ENCODER: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
    num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
)  # fmt: skip
RANK_UNET, RANK_VAE, RANK_ATTN = 4, 4, 64

# The trainer's tiny SD2.1-shaped base (one definition for the trainer and the --smoke benches).
from magicbokeh.train.magicbokeh import TINY_UNET, TINY_VAE  # noqa: E402

TINY_TEXT_ENCODER: dict[str, Any] = dict(
    vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
)  # fmt: skip
TINY_COND_CHANNELS = (8, 16, 16)


def build_stock(tiny: bool = False, *, device: str | torch.device = "cpu", seed: int = 0):
    """Stock SD2.1-shaped UNet (with mid block and cross-attention) and VAE, seeded random init."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD21_UNET)).eval()
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**(TINY_VAE if tiny else SD21_VAE)).eval()
    return unet, vae


def synthetic_checkpoint(unet_stock, vae, *, tiny: bool = False, seed: int = 0):
    """A ``MagicBokehCheckpoint`` in the official layout with seeded random LoRA/ControlNet weights.

    LoRA up-weights are non-zero (as after training) so every adapter changes the network.
    """
    from magicbokeh.diffusion.checkpoint import MagicBokehCheckpoint
    from magicbokeh.diffusion.models import FocusControlNet, patch_unet
    from magicbokeh.diffusion.reference import official_unet_lora_targets, official_vae_lora_targets

    gen = torch.Generator().manual_seed(seed + 100)
    # target lists from the patched structure (meta copy: names only, no memory)
    with torch.device("meta"):
        from diffusers import UNet2DConditionModel

        patched = patch_unet(UNet2DConditionModel.from_config(unet_stock.config))
    enc, dec, others = official_unet_lora_targets(patched)
    modules = dict(patched.named_modules())

    def lora_pair(module, rank: int, name: str, adapter: str, out: dict) -> None:
        if isinstance(module, torch.nn.Linear):
            a_shape, b_shape = (rank, module.in_features), (module.out_features, rank)
        else:
            k = module.kernel_size
            a_shape, b_shape = (rank, module.in_channels, *k), (module.out_channels, rank, 1, 1)
        fan_in = float(torch.tensor(a_shape[1:]).prod())
        out[f"{name}.lora_A.{adapter}.weight"] = torch.randn(a_shape, generator=gen) / fan_in**0.5
        out[f"{name}.lora_B.{adapter}.weight"] = torch.randn(b_shape, generator=gen) * 0.02 / rank**0.5

    sd_unet: dict[str, torch.Tensor] = {}
    for names, adapter in ((enc, "default_encoder"), (dec, "default_decoder")):
        for name in names:
            lora_pair(modules[name], RANK_UNET, name, adapter, sd_unet)
    conv_in = unet_stock.conv_in
    sd_unet["conv_in.base_layer.weight"] = conv_in.weight.detach().cpu() + 0.01 * torch.randn(conv_in.weight.shape, generator=gen)
    sd_unet["conv_in.base_layer.bias"] = conv_in.bias.detach().cpu().clone()

    vae_targets = official_vae_lora_targets(vae)
    vae_modules = dict(vae.named_modules())
    sd_vae: dict[str, torch.Tensor] = {}
    for name in dict.fromkeys(vae_targets):
        lora_pair(vae_modules[name], RANK_VAE, name, "default_encoder", sd_vae)

    rank_attn = 8 if tiny else RANK_ATTN
    proc: dict[str, torch.Tensor] = {}
    for name in patched.attn_processors:
        if "up_blocks" in name and name.endswith("attn1.processor"):
            d = modules[name[: -len(".processor")]].to_q.in_features
            for attr in ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora"):
                proc[f"{name}.{attr}.0.weight"] = torch.randn(rank_attn, d, generator=gen) / d**0.5
                proc[f"{name}.{attr}.1.weight"] = torch.randn(d, rank_attn, generator=gen) * 0.5

    cond = TINY_COND_CHANNELS if tiny else (16, 32, 96, 256)
    cfg = FocusControlNet.config_from_unet(unet_stock.config, conditioning_embedding_out_channels=cond)
    torch.manual_seed(seed + 2)
    controlnet = FocusControlNet(**cfg)
    with torch.no_grad():  # "trained": zero convs no longer zero
        for name, p in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_cond_embedding.conv_out")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    cn_state = {k: v.detach().clone() for k, v in controlnet.state_dict().items()}
    del controlnet, patched
    return MagicBokehCheckpoint(
        rank_unet=RANK_UNET, unet_encoder_modules=enc, unet_decoder_modules=dec, state_dict_unet=sd_unet,
        rank_vae=RANK_VAE, vae_modules=vae_targets, state_dict_vae=sd_vae, controlnet_state_dict=cn_state,
        controlnet_config={"conditioning_embedding_out_channels": list(cond)}, rank_attn=rank_attn,
        processor_state_dict=proc,
    )  # fmt: skip


def text_encoder_fn(tiny: bool, device, dtype, seed: int = 0):
    """A random-weight CLIP text encoder run on the empty prompt; returns a zero-arg callable."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed + 3)
    with torch.device(device):
        model = CLIPTextModel(CLIPTextConfig(**(TINY_TEXT_ENCODER if tiny else SD21_TEXT_ENCODER)))
    model = model.to(dtype=dtype).eval().requires_grad_(False)
    ids = torch.zeros(1, 77, dtype=torch.long, device=device)
    ids[0, 0], ids[0, 1] = (49406, 49407) if not tiny else (1, 2)  # BOS, EOS, then padding

    def encode() -> torch.Tensor:
        with torch.no_grad():
            return model(ids)[0]

    return encode


def bench_image(h: int, w: int, seed: int = 0):
    """A smooth photo-like float32 (H, W, 3) in [0.05, 0.95] and a disparity with a near object."""
    import numpy as np

    rng = np.random.default_rng(seed)
    small = rng.random((h // 32 + 2, w // 32 + 2, 3)).astype(np.float32)
    yy = np.linspace(0, small.shape[0] - 1.001, h)
    xx = np.linspace(0, small.shape[1] - 1.001, w)
    y0, x0 = yy.astype(int), xx.astype(int)
    fy, fx = (yy - y0)[:, None, None], (xx - x0)[None, :, None]
    img = (small[y0][:, x0] * (1 - fy) * (1 - fx) + small[y0 + 1][:, x0] * fy * (1 - fx)
           + small[y0][:, x0 + 1] * (1 - fy) * fx + small[y0 + 1][:, x0 + 1] * fy * fx)  # fmt: skip
    img = (0.05 + 0.9 * img + 0.03 * rng.standard_normal((h, w, 3))).clip(0, 1).astype(np.float32)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    disp = 0.2 + 0.3 * gy / max(h - 1, 1)
    disp[(gy - h / 2) ** 2 + (gx - w / 2) ** 2 < (min(h, w) / 4) ** 2] = 0.9
    return img, disp.astype(np.float32)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux); False where unsupported."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    """Peak resident set size in GB since the last reset (VmHWM), else since start."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


# Depth Anything V2 Small (ViT-S/14 DINOv2 backbone + DPT head), as on the Hub; tiny variant for smoke runs.
DA_SMALL_BACKBONE: dict[str, Any] = dict(
    hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, image_size=518, patch_size=14,
    out_features=["stage3", "stage6", "stage9", "stage12"], reshape_hidden_states=False, apply_layernorm=True,
)  # fmt: skip
DA_SMALL_HEAD: dict[str, Any] = dict(
    reassemble_hidden_size=384, patch_size=14, fusion_hidden_size=64,
    neck_hidden_sizes=[48, 96, 192, 384], depth_estimation_type="relative", max_depth=1,
)  # fmt: skip
DA_TINY_BACKBONE: dict[str, Any] = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=28,
    patch_size=14, out_features=["stage1", "stage2"], reshape_hidden_states=False, apply_layernorm=True,
)  # fmt: skip
DA_TINY_HEAD: dict[str, Any] = dict(
    reassemble_hidden_size=16, patch_size=14, fusion_hidden_size=8, neck_hidden_sizes=[8, 16],
    reassemble_factors=[2, 1], depth_estimation_type="relative", max_depth=1,
)  # fmt: skip

#: Dense fp16/bf16 tensor-core peak (FLOP/s) by device-name fragment, for the fraction of peak.
PEAK_FP16_FLOPS: dict[str, float] = {
    "H200": 989.4e12, "H100 SXM": 989.4e12, "H100": 756e12, "A100": 312e12, "L40S": 362e12,
    "RTX PRO 6000": 503.8e12, "L4": 121e12, "A10G": 125e12, "T4": 65e12,
}  # fmt: skip


def build_depth_model(tiny: bool, *, device: str | torch.device = "cpu", dtype=torch.float32, seed: int = 0):
    """A seeded random-weight Depth Anything V2 (Small, or tiny for smoke runs); None without transformers.

    The upstream position-embedding interpolation of :mod:`magicbokeh.depth.depth_anything` is installed,
    so :func:`magicbokeh.depth.depth_anything.predict_disparity` runs it exactly as the app does.
    """
    try:
        from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    except Exception:  # noqa: BLE001 - transformers is optional on the GPU machine
        return None
    from magicbokeh.depth.depth_anything import apply_upstream_position_embeddings

    torch.manual_seed(seed + 7)
    backbone = Dinov2Config(**(DA_TINY_BACKBONE if tiny else DA_SMALL_BACKBONE))
    cfg = DepthAnythingConfig(backbone_config=backbone, **(DA_TINY_HEAD if tiny else DA_SMALL_HEAD))
    model = DepthAnythingForDepthEstimation(cfg).eval()
    apply_upstream_position_embeddings(model)
    return model.to(device=device, dtype=dtype)


def peak_flops(device_name: str) -> float | None:
    """The dense fp16 peak of a known GPU (FLOP/s), else None."""
    for fragment, flops in PEAK_FP16_FLOPS.items():
        if fragment.lower() in device_name.lower():
            return flops
    return None


def count_flops(fn) -> float:
    """FLOPs of one call of ``fn()`` (torch's FlopCounterMode: matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())
