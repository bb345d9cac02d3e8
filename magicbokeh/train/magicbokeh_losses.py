"""Losses of the MagicBokeh trainer: ``l2_weight · MSE + lpips_weight · LPIPS`` in pixel space, and the
deterministic VAE posterior noise that makes every step a function of (seed, step) only."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .magicbokeh_config import LossConfig

logger = logging.getLogger(__name__)


def _seed_int(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def posterior_noise(seed: int, step: int, micro: int, rank: int, shape: tuple[int, ...]):
    """The VAE posterior noise of one micro-batch: a function of (seed, step, micro, rank) only."""
    import torch

    gen = torch.Generator().manual_seed(_seed_int(seed, 0x4E01, step, micro, rank))
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def load_lpips(loss: LossConfig, device: Any) -> Any | None:
    """The frozen LPIPS (VGG) network, or None when its weight is 0 or the package is missing."""
    if loss.lpips_weight <= 0:
        return None
    try:
        import lpips  # optional; needs torchvision and downloads VGG weights on first use
    except ImportError:
        logger.warning("LPIPS unavailable (pip install lpips); training with the L2 loss only "
                       "(loss.lpips_weight=%g ignored).", loss.lpips_weight)
        return None
    fn = lpips.LPIPS(net="vgg", verbose=False).to(device).eval()
    fn.requires_grad_(False)
    return fn


def pixel_loss(pred: Any, target: Any, loss: LossConfig, lpips_fn: Any | None) -> tuple[Any, Any, Any]:
    """``(loss for backward, MSE, LPIPS)`` of images in [-1, 1]; the last two detached (LPIPS 0 when off)."""
    import torch.nn.functional as F

    l2 = F.mse_loss(pred.float(), target.float())
    total = loss.l2_weight * l2
    lp = l2.new_zeros(())
    if lpips_fn is not None and loss.lpips_weight > 0:
        lp = lpips_fn(pred.float(), target.float()).mean()
        total = total + loss.lpips_weight * lp
    return total, l2.detach(), lp.detach()


__all__ = ["load_lpips", "pixel_loss", "posterior_noise"]
