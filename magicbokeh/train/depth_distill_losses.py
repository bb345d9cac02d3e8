"""Losses and metrics of the DA-depth distillation (see the loss definition in ``depth_distill``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .depth_distill_model import FeatureTap, patch_size

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .depth_distill_config import DistillConfig


def _patch_tokens(x: "torch.Tensor", num_patches: int) -> "torch.Tensor":
    """(B, N, C) patch tokens of a (B, T, C) token tensor (leading class/register tokens dropped)."""
    if x.ndim == 4:  # (B, C, h, w) maps
        return x.flatten(2).transpose(1, 2)
    return x[:, x.shape[1] - num_patches:]


def feature_distillation_loss(student_maps: Sequence[Any], teacher_maps: Sequence[Any], *,
                              num_patches: int) -> "torch.Tensor":
    """Mean over maps of the MSE between per-token layer-normed student and teacher features.

    Args:
        student_maps, teacher_maps: the backbone feature maps the neck reads, same shapes, as
            ``(B, 1 + N, C)`` tokens or ``(B, C, h, w)``.
        num_patches: N, the number of patch tokens (``(H / 14) * (W / 14)``).

    Returns:
        scalar float32 tensor >= 0 (0 when the features agree; about 2 for unrelated features).
    """
    import torch
    import torch.nn.functional as F

    if len(student_maps) != len(teacher_maps) or not student_maps:
        raise ValueError(f"{len(student_maps)} student vs {len(teacher_maps)} teacher feature maps")
    losses = []
    for s, t in zip(student_maps, teacher_maps):
        s = _patch_tokens(s.float(), num_patches)
        t = _patch_tokens(t.detach().float(), num_patches)
        s = F.layer_norm(s, s.shape[-1:])
        t = F.layer_norm(t, t.shape[-1:])
        losses.append(F.mse_loss(s, t))
    return torch.stack(losses).mean()


def _masked_median(x: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    import torch

    return torch.nanmedian(torch.where(mask, x, torch.full_like(x, float("nan"))), dim=1).values


def normalise_median_mad(x: "torch.Tensor", mask: "torch.Tensor", eps: float = 1e-12) -> "torch.Tensor":
    """Per image (rows of ``(B, P)``): subtract the median, divide by the mean absolute deviation."""
    count = mask.sum(dim=1).clamp_min(1)
    median = _masked_median(x, mask).nan_to_num(0.0)
    centred = (x - median[:, None]) * mask
    mad = (centred.abs().sum(dim=1) / count).clamp_min(eps)
    return centred / mad[:, None]


def align_least_squares(pred: "torch.Tensor", target: "torch.Tensor", mask: "torch.Tensor",
                        eps: float = 1e-6) -> "torch.Tensor":
    """``scale * pred + shift`` per image (rows of ``(B, P)``), the least-squares fit to ``target``.

    Solves the 2x2 normal equations over the masked pixels; an image whose prediction is (nearly)
    constant gets scale 0 and the target's mean as shift. Gradients flow through the fit.
    """
    import torch

    m = mask.to(pred.dtype)
    a00 = (m * pred * pred).sum(1)
    a01 = (m * pred).sum(1)
    a11 = m.sum(1)
    b0 = (m * pred * target).sum(1)
    b1 = (m * target).sum(1)
    det = a00 * a11 - a01 * a01
    ok = det > eps * a11.clamp_min(1) ** 2
    safe = torch.where(ok, det, torch.ones_like(det))
    scale = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.zeros_like(det))
    shift = torch.where(ok, (a00 * b1 - a01 * b0) / safe, b1 / a11.clamp_min(1))
    return scale[:, None] * pred + shift[:, None]


def scale_shift_invariant_loss(pred: "torch.Tensor", target: "torch.Tensor",
                               mask: "torch.Tensor | None" = None) -> "torch.Tensor":
    """MiDaS-style scale-and-shift-invariant L1 between disparities ``(B, H, W)``.

    The target is normalised per image to zero median and unit mean absolute deviation; the
    prediction is least-squares aligned to it (:func:`align_least_squares`, after the same
    normalisation for numerical conditioning, which the affine fit makes exact); the result is the
    mean absolute error over valid pixels (``mask`` and finite target), averaged over images.
    Scalar float32 tensor >= 0; 0 when the prediction is an affine function of the target.
    """
    import torch

    b = pred.shape[0]
    pred = pred.float().reshape(b, -1)
    target = target.detach().float().reshape(b, -1)
    valid = torch.isfinite(target)
    if mask is not None:
        valid = valid & mask.reshape(b, -1).bool()
    target = torch.where(valid, target, torch.zeros_like(target))
    t = normalise_median_mad(target, valid)
    p = normalise_median_mad(pred, valid)
    aligned = align_least_squares(p, t, valid)
    count = valid.sum(1).clamp_min(1)
    return (((aligned - t).abs() * valid).sum(1) / count).mean()


def absrel_against_teacher(pred: "torch.Tensor", teacher: "torch.Tensor", *, rel_floor: float = 1e-3) -> "torch.Tensor":
    """Per-image AbsRel ``mean(|aligned - t| / t)`` of the least-squares aligned student disparity.

    Pixels whose teacher disparity is at most ``rel_floor`` x that image's maximum (the far
    background, where relative errors explode) are left out. Returns ``(B,)`` float64.
    """
    import torch

    b = pred.shape[0]
    p = pred.double().reshape(b, -1)
    t = teacher.double().reshape(b, -1)
    valid = torch.isfinite(t) & (t > rel_floor * t.amax(dim=1, keepdim=True).clamp_min(1e-30))
    aligned = align_least_squares(p, torch.where(valid, t, torch.zeros_like(t)), valid, eps=1e-12)
    rel = torch.where(valid, (aligned - t).abs() / t.clamp_min(1e-30), torch.zeros_like(t))
    return rel.sum(1) / valid.sum(1).clamp_min(1)


@dataclass
class StepLosses:
    """Losses of one micro-batch: ``total`` (for backward), its two terms, and both predictions."""

    total: Any
    feature: Any
    output: Any
    student_disparity: Any  # (B, H, W), with grad when training
    teacher_disparity: Any  # (B, H, W) float32, no grad


def distillation_losses(student: Any, teacher: Any, taps: tuple[FeatureTap, FeatureTap], clean: Any,
                        degraded: Any, cfg: DistillConfig, *, teacher_dtype: Any = None) -> StepLosses:
    """Run teacher (clean, no grad) and student (degraded) and return the weighted losses.

    ``clean`` and ``degraded`` are ``(B, 3, H, W)`` RGB in [0, 1] on the model's device.
    """
    import torch

    from .image_folder import normalise_imagenet

    student_tap, teacher_tap = taps
    patch = patch_size(teacher)
    num_patches = (clean.shape[-2] // patch) * (clean.shape[-1] // patch)
    with torch.no_grad():
        t_in = normalise_imagenet(clean)
        if teacher_dtype is not None:
            t_in = t_in.to(teacher_dtype)
        t_pred = teacher(pixel_values=t_in).predicted_depth.float()
        t_maps = teacher_tap.pop()
    s_pred = student(pixel_values=normalise_imagenet(degraded)).predicted_depth
    s_maps = student_tap.pop()
    feat = feature_distillation_loss(s_maps, t_maps, num_patches=num_patches)
    out = scale_shift_invariant_loss(s_pred, t_pred)
    total = cfg.feature_weight * feat + cfg.output_weight * out
    return StepLosses(total=total, feature=feat, output=out, student_disparity=s_pred, teacher_disparity=t_pred)


__all__ = ["StepLosses", "absrel_against_teacher", "align_least_squares", "distillation_losses",
           "feature_distillation_loss", "normalise_median_mad", "scale_shift_invariant_loss"]
