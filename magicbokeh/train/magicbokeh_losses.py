"""Losses of the MagicBokeh trainer: ``l2_weight · MSE + lpips_weight · LPIPS`` in pixel space, and the
deterministic VAE posterior noise that makes every step a function of (seed, step) only."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MagicBokehError
from .magicbokeh_config import LossConfig


def _seed_int(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def posterior_noise(seed: int, step: int, micro: int, rank: int, shape: tuple[int, ...]):
    """The VAE posterior noise of one micro-batch: a function of (seed, step, micro, rank) only."""
    import torch

    gen = torch.Generator().manual_seed(_seed_int(seed, 0x4E01, step, micro, rank))
    return torch.randn(shape, generator=gen, dtype=torch.float32)


#: What to do when the LPIPS loss cannot be built (the config key that turns it off is named).
LPIPS_REMEDY = "pip install -r requirements-train.txt, or set loss.lpips_weight: 0 to train with the L2 loss only"


def load_lpips(loss: LossConfig, device: Any) -> Any | None:
    """The frozen LPIPS (VGG) network, or None when ``loss.lpips_weight`` is 0 (L2 only).

    A configured LPIPS loss that cannot be built stops the run (``MagicBokehError``, exit 2) before
    anything is trained or written: the paper trains with L2 + LPIPS, so a silent L2-only run would be
    a different experiment. The lpips wheel ships its linear-layer weights; the VGG16 backbone comes
    from torchvision (``vgg16-397923af.pth`` in ``$TORCH_HOME/hub/checkpoints``, see docs/training.md).
    """
    if loss.lpips_weight <= 0:
        return None
    try:
        import lpips
    except Exception as exc:  # ImportError, or a torchvision built for another torch (RuntimeError)
        raise MagicBokehError(
            f"loss.lpips_weight={loss.lpips_weight:g} needs the lpips package, which cannot be imported "
            f"({type(exc).__name__}: {_first_line(exc)}); {LPIPS_REMEDY}."
        ) from None
    try:
        fn = lpips.LPIPS(net="vgg", verbose=False)
    except Exception as exc:  # e.g. the VGG16 backbone is neither cached nor downloadable
        raise MagicBokehError(
            f"cannot build the LPIPS loss (loss.lpips_weight={loss.lpips_weight:g}): {type(exc).__name__}: "
            f"{_first_line(exc)}. Its VGG16 backbone is torchvision's vgg16-397923af.pth in "
            f"$TORCH_HOME/hub/checkpoints (docs/training.md); {LPIPS_REMEDY}."
        ) from None
    fn = fn.to(device).eval()
    fn.requires_grad_(False)
    return fn


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


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


__all__ = ["LPIPS_REMEDY", "load_lpips", "pixel_loss", "posterior_noise"]
