"""The per-tile one-step forward, shared by inference (``pipeline``) and training (``train.magicbokeh``).

One code path, three steps (spec §1.6):

1. :func:`encode_latents`: VAE encoder (+ LoRA) → posterior ``mean + std · noise`` × scaling factor;
2. :func:`predict_x0`: ControlNet on the defocus condition → 12 residuals, UNet at t = 999 with the
   focus mask on the nine up-block self-attentions → ε̂, then ``x0 = (z − √(1−ᾱ)·ε̂)/√ᾱ``;
3. :func:`decode_latents`: VAE decode, clamp to [−1, 1].

The networks may carry unmerged peft LoRA (training) or merged weights (inference): the functions
only call them. Gradients flow through every step when autograd is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .attention import FocusMask
from .models import latent_grids, unet_forward


@dataclass(frozen=True)
class OneStepConstants:
    """Constants of the one-step x0 prediction.

    Attributes:
        timestep: the fixed diffusion step (``num_train_timesteps - 1`` = 999).
        alpha_prod_t: ᾱ at ``timestep`` (0-d float32 tensor; SD2.1: 0.0046600951).
        clip_sample: x0 clamp range when the scheduler clips, else None (SD2.1: None).
        scaling_factor: VAE latent scale (0.18215 for SD2.1).
        vae_scale_factor: pixels per latent cell (8 for SD2.1).
    """

    timestep: int
    alpha_prod_t: torch.Tensor
    clip_sample: float | None
    scaling_factor: float
    vae_scale_factor: int


def x0_from_eps(
    latent: torch.Tensor, eps: torch.Tensor, alpha_prod_t: torch.Tensor, clip_sample: float | None = None
) -> torch.Tensor:
    """One DDPM step from t = 999 to the end: ``(z − √(1−ᾱ)·ε̂) / √ᾱ`` in float32.

    With a single inference step the previous ᾱ is 1 and the DDPM posterior mean equals the x0
    prediction (spec §1.7). The operations mirror ``DDPMScheduler.step`` so the fp32 result matches it.
    """
    a = alpha_prod_t.to(latent.device)
    b = 1 - a
    x0 = (latent.float() - b ** (0.5) * eps.float()) / a ** (0.5)
    return x0 if clip_sample is None else x0.clamp(-clip_sample, clip_sample)


def encode_latents(vae: Any, x: torch.Tensor, noise: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """Scaled posterior sample of the VAE encoder.

    Args:
        vae: ``AutoencoderKL`` (its encoder may carry LoRA).
        x: ``(B, 3, T, T)`` tiles in [−1, 1], in the VAE's dtype.
        noise: ``(B, 4, T/f, T/f)`` float32 standard-normal noise (f = VAE factor), on ``x``'s device.
        scaling_factor: VAE latent scale.

    Returns:
        ``(B, 4, T/f, T/f)`` float32 ``(mean + std · noise) · scaling_factor``.
    """
    moments = vae.quant_conv(vae.encoder(x)).float()
    mean, logvar = moments.chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    return (mean + std * noise) * scaling_factor


def defocus_condition(defocus: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ControlNet condition from ``(B, 1, T, T)`` defocus in [0, 1]: ×2 − 1, repeated to 3 channels."""
    return (defocus * 2 - 1).to(dtype).expand(-1, 3, -1, -1)


def focus_mask(unet_config: Any, in_focus: torch.Tensor | None, tile: int, vae_scale_factor: int) -> FocusMask | None:
    """``FocusMask`` from ``(B, T, T)`` bool in-focus tiles; None (no restriction) when ``in_focus`` is None."""
    if in_focus is None:
        return None
    lat = tile // vae_scale_factor
    return FocusMask.from_pixel_mask(in_focus, latent_grids(unet_config, (lat, lat)))


def predict_x0(
    unet: Any,
    controlnet: Any,
    latents: torch.Tensor,
    cond: torch.Tensor,
    focus: FocusMask | None,
    consts: OneStepConstants,
    dtype: torch.dtype,
) -> torch.Tensor:
    """ControlNet + UNet at t = 999, then the x0 step.

    Args:
        latents: ``(B, 4, h, w)`` scaled latents (any float dtype; cast to ``dtype``).
        cond: ``(B, 3, T, T)`` condition (:func:`defocus_condition`).
        focus: per-tile focus classes, or None for no restriction (Real-ISR, K = 0).

    Returns:
        ``(B, 4, h, w)`` float32 x0 latent.
    """
    z = latents.to(dtype)
    residuals = controlnet(z, consts.timestep, cond)
    eps = unet_forward(unet, z, consts.timestep, residuals, focus)
    return x0_from_eps(z, eps, consts.alpha_prod_t, consts.clip_sample)  # the latent as the networks saw it


def decode_latents(vae: Any, x0: torch.Tensor, scaling_factor: float, dtype: torch.dtype) -> torch.Tensor:
    """``(B, 3, T, T)`` float32 image in [−1, 1] from the x0 latent."""
    return vae.decode((x0 / scaling_factor).to(dtype)).sample.clamp(-1, 1).float()


def restore_tiles(
    unet: Any,
    controlnet: Any,
    vae: Any,
    consts: OneStepConstants,
    x: torch.Tensor,
    defocus: torch.Tensor,
    in_focus: torch.Tensor | None,
    noise: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The whole per-tile forward: ``(B, 3, T, T)`` input in [−1, 1] → output in [−1, 1] (float32).

    Args:
        x: input tiles in [−1, 1].
        defocus: ``(B, 1, T, T)`` defocus ``|d − f|·K/32`` in [0, 1] (zeros for Real-ISR).
        in_focus: ``(B, T, T)`` bool in-focus mask, or None for no attention restriction.
        noise: ``(B, 4, T/f, T/f)`` float32 posterior noise.
        dtype: compute dtype of the networks.
    """
    tile = x.shape[-1]
    z = encode_latents(vae, x.to(dtype), noise.to(x.device), consts.scaling_factor)
    cond = defocus_condition(defocus, dtype)
    focus = focus_mask(unet.config, in_focus, tile, consts.vae_scale_factor)
    x0 = predict_x0(unet, controlnet, z, cond, focus, consts, dtype)
    return decode_latents(vae, x0, consts.scaling_factor, dtype)


__all__ = [
    "OneStepConstants",
    "decode_latents",
    "defocus_condition",
    "encode_latents",
    "focus_mask",
    "predict_x0",
    "restore_tiles",
    "x0_from_eps",
]
