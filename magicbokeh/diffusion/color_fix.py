"""Colour correction of the model output towards the input photo (spec §1.2 step 12).

* ``adain``: per RGB channel, normalise the output to zero mean / unit std over the whole image
  and rescale it to the input's mean and std (variance + 1e-5, unbiased as ``torch.var``).
  The official default.
* ``wavelet``: keep the output's high frequencies and take the input's low frequencies, from a
  5-level à-trous decomposition with a 3×3 binomial kernel (defined, unused, in the official code).
* ``none``: clamp only.

All functions take and return ``(3, H, W)`` float tensors in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COLOR_FIXES = ("adain", "wavelet", "none")
_ADAIN_EPS = 1e-5
_WAVELET_LEVELS = 5


def adain_color_fix(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Match each channel's mean and std of ``target`` to ``source``; clamped to [0, 1]."""
    t = target.reshape(target.shape[0], -1)
    s = source.reshape(source.shape[0], -1)
    t_mean, t_std = t.mean(dim=1), (t.var(dim=1) + _ADAIN_EPS).sqrt()
    s_mean, s_std = s.mean(dim=1), (s.var(dim=1) + _ADAIN_EPS).sqrt()
    out = (target - t_mean[:, None, None]) / t_std[:, None, None] * s_std[:, None, None] + s_mean[:, None, None]
    return out.clamp(0.0, 1.0)


def _blur(image: torch.Tensor, dilation: int) -> torch.Tensor:
    """3×3 binomial blur with holes (à trous), replicate padding; (C, H, W) in and out."""
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=image.dtype, device=image.device)
    kernel = (k1[:, None] * k1[None, :]).expand(image.shape[0], 1, 3, 3)
    x = F.pad(image[None], (dilation,) * 4, mode="replicate")
    return F.conv2d(x, kernel, groups=image.shape[0], dilation=dilation)[0]


def _wavelet_split(image: torch.Tensor, levels: int = _WAVELET_LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """(high frequencies, residual low frequencies) of an à-trous decomposition."""
    high = torch.zeros_like(image)
    low = image
    for i in range(levels):
        blurred = _blur(low, 2**i)
        high = high + (low - blurred)
        low = blurred
    return high, low


def wavelet_color_fix(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Output detail (high frequencies) on the input's colours (low frequencies); in [0, 1].

    Replicate padding needs each side larger than the widest dilation (16 px); smaller images
    fall back to AdaIN.
    """
    if min(target.shape[-2:]) <= 2 ** (_WAVELET_LEVELS - 1):
        return adain_color_fix(target, source)
    high, _ = _wavelet_split(target)
    _, low = _wavelet_split(source)
    return (high + low).clamp(0.0, 1.0)


def apply_color_fix(kind: str, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Dispatch on ``kind`` in ``COLOR_FIXES``."""
    if kind == "adain":
        return adain_color_fix(target, source)
    if kind == "wavelet":
        return wavelet_color_fix(target, source)
    if kind == "none":
        return target.clamp(0.0, 1.0)
    raise ValueError(f"unknown colour fix {kind!r}; choose one of {', '.join(COLOR_FIXES)}")


__all__ = ["COLOR_FIXES", "adain_color_fix", "apply_color_fix", "wavelet_color_fix"]
