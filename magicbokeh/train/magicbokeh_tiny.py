"""The tiny random SD2.1-shaped base of ``base: tiny``: for tests, benches and smoke runs on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

from ..publish import publish_folder

#: The tiny SD2.1-shaped base of ``base: tiny`` (stock layout, with mid block and cross-attention).
TINY_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 32, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(2, 2, 4), cross_attention_dim=32, layers_per_block=1,
    use_linear_projection=True, norm_num_groups=8,
)  # fmt: skip
TINY_VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=(16, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=0.18215,
)  # fmt: skip
#: SD2.1-base ``scheduler_config.json`` (DDPM arithmetic at t = 999).
SD21_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}  # fmt: skip


def make_tiny_base(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random SD2.1-shaped diffusers folder (``unet/``, ``vae/``, ``scheduler/``), once."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if (folder / "scheduler" / "scheduler_config.json").is_file():
        return folder
    with publish_folder(folder, if_exists="keep") as tmp:  # concurrent makers build identical copies
        torch.manual_seed(seed)
        UNet2DConditionModel(**TINY_UNET).save_pretrained(tmp / "unet")
        torch.manual_seed(seed + 1)
        AutoencoderKL(**TINY_VAE).save_pretrained(tmp / "vae")
        (tmp / "scheduler").mkdir(parents=True)
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_SCHEDULER, indent=1))
    return folder


__all__ = ["SD21_SCHEDULER", "TINY_UNET", "TINY_VAE", "make_tiny_base"]
