"""Self-feature distillation of a degradation-aware Depth Anything V2 student ("DA depth").

MagicBokeh (supplement §1) makes its depth model robust to low-quality photos this way: a frozen
Depth Anything V2 teacher sees a clean crop, an identically initialised student sees a degraded copy
(Real-ESRGAN pipeline), and the student learns to reproduce the teacher's encoder features and its
prediction. The paper states neither the loss forms, the layers nor the weights; the choices below
are ours and every one of them is an option.

Loss per micro-batch (all in float32)::

    loss = feature_weight * L_feature + output_weight * L_output

* ``L_feature``: the 4 (ViT-L; as many as ``out_indices`` in general) backbone feature maps that the
  DPT neck reads (the hidden states at ``backbone_config.out_indices``, after the backbone's final
  layer norm), patch tokens only (the class token is dropped, as the neck drops it). Each token of
  student and teacher is layer-normalised over channels without affine parameters, then compared with
  the mean squared error; the maps are averaged.
* ``L_output``: scale-and-shift-invariant L1 (MiDaS style) between the student's disparity and the
  teacher's clean disparity. Per image, the teacher's disparity is normalised to zero median and unit
  mean absolute deviation; the student's disparity is aligned to it by least squares (scale and shift,
  gradients flow through the fit); the loss is the mean absolute error over valid (finite) pixels.

Defaults: ``--feature-weight 1 --output-weight 1`` (our choice), AdamW lr 5e-6 (as Depth Anything
V2's metric fine-tuning), weight decay 0.01, linear warm-up over 5 % of the steps then cosine decay
to 0 (``--lr-schedule constant`` keeps the peak), gradient clipping at norm 1.

Run it as is (one process) or under ``accelerate launch`` (several GPUs or nodes)::

    python -m magicbokeh.train.depth_distill --teacher dadepth --images SA1B/ --output runs/da
    accelerate launch --multi_gpu --num_processes 4 -m magicbokeh.train.depth_distill ...

Outputs in ``--output``: ``checkpoint-STEP/`` (student ``model.safetensors`` + ``config.json``,
``trainer_state.json``, accelerate state in ``state/``), ``final/`` (a transformers folder for
``--depth-model``), ``metrics.jsonl`` and ``run_info.json``. A rerun with the same ``--output``
resumes from the last complete checkpoint; the continuation is exact (same data, same numbers).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..entrypoint import run_command
from ..errors import MagicBokehError
from ..publish import publish_folder, publish_text
from .common import (
    MetricsLog,
    atomic_checkpoint,
    is_complete_checkpoint,
    last_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

DEGRADATIONS = ("realesrgan", "zoom")
LR_SCHEDULES = ("cosine", "constant")
MIXED_PRECISION = ("no", "fp16", "bf16")
TRAINER_STATE = "trainer_state.json"
RUN_INFO = "run_info.json"
METRICS = "metrics.jsonl"
#: Arguments that must not change between an interrupted run and its resumption for exactness.
_RESUME_KEYS = ("batch_size", "grad_accum", "crop", "seed", "degradation", "degradation_scale")


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillConfig:
    """Everything one distillation run needs (the CLI flags, validated by :func:`check_config`)."""

    teacher: str
    images: str
    output: str
    steps: int = 20000
    batch_size: int = 4
    lr: float = 5e-6
    weight_decay: float = 0.01
    lr_schedule: str = "cosine"
    warmup_steps: int | None = None  # None: 5 % of steps
    max_grad_norm: float = 1.0
    crop: int = 518
    val_images: str | None = None
    val_every: int = 1000
    save_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    grad_accum: int = 1
    mixed_precision: str = "no"
    feature_weight: float = 1.0
    output_weight: float = 1.0
    seed: int = 0
    num_workers: int = 4
    degradation: str = "realesrgan"
    degradation_scale: float = 4.0
    resume: str = "latest"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def warmup(self) -> int:
        """Warm-up length in optimizer steps."""
        return int(self.warmup_steps) if self.warmup_steps is not None else int(round(0.05 * self.steps))


def check_config(cfg: DistillConfig) -> None:
    """Raise :class:`MagicBokehError` naming the first bad setting and what to use instead."""
    positive = {"steps": cfg.steps, "batch_size": cfg.batch_size, "crop": cfg.crop, "val_every": cfg.val_every,
                "save_every": cfg.save_every, "log_every": cfg.log_every, "grad_accum": cfg.grad_accum}
    for name, value in positive.items():
        if value < 1:
            raise MagicBokehError(f"--{name.replace('_', '-')} {value} must be at least 1.")
    if not cfg.lr > 0:
        raise MagicBokehError(f"--lr {cfg.lr} must be positive (the default is 5e-6).")
    if cfg.feature_weight < 0 or cfg.output_weight < 0 or cfg.feature_weight + cfg.output_weight == 0:
        raise MagicBokehError("--feature-weight and --output-weight must be >= 0 and not both 0.")
    if cfg.num_workers < 0:
        raise MagicBokehError(f"--num-workers {cfg.num_workers} must be >= 0 (0 loads in the main process).")
    if cfg.warmup_steps is not None and cfg.warmup_steps < 0:
        raise MagicBokehError(f"--warmup-steps {cfg.warmup_steps} must be >= 0.")
    if cfg.degradation not in DEGRADATIONS:
        raise MagicBokehError(f"--degradation {cfg.degradation!r}: use one of {', '.join(DEGRADATIONS)}.")
    from ..degradation import MAX_SCALE, min_side_for_scale

    if not 1.0 <= cfg.degradation_scale <= MAX_SCALE:
        raise MagicBokehError(f"--degradation-scale {cfg.degradation_scale:g} must be in [1, {MAX_SCALE:g}].")
    need = min_side_for_scale(cfg.degradation_scale)
    if cfg.crop < need:
        raise MagicBokehError(
            f"--crop {cfg.crop} is too small for --degradation-scale {cfg.degradation_scale:g}; use at least "
            f"{need} px (a multiple of 14, e.g. {math.ceil(need / 14) * 14})."
        )
    if not Path(cfg.images).is_dir():
        raise MagicBokehError(f"--images {cfg.images}: no such folder; pass a folder of photos.")
    if cfg.val_images is not None and not Path(cfg.val_images).is_dir():
        raise MagicBokehError(f"--val-images {cfg.val_images}: no such folder; pass a folder of photos.")


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


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


def _install_upstream_position_embeddings(model: Any) -> None:
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


# ---------------------------------------------------------------------------------------------
# Losses and metrics
# ---------------------------------------------------------------------------------------------


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
    patch = _patch_size(teacher)
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


def _patch_size(model: Any) -> int:
    config = model.config
    return int(getattr(config, "patch_size", None) or config.backbone_config.patch_size)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PresetDegradation:
    """Picklable ``(rgb, rng) -> rgb`` wrapper of :func:`magicbokeh.degradation.degrade`."""

    preset: str = "realesrgan"
    scale: float = 4.0

    def __call__(self, rgb: Any, rng: Any) -> Any:
        from ..degradation import degrade

        return degrade(rgb, preset=self.preset, scale=self.scale, seed=rng)


def _lr_lambda(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate factor at scheduler step ``step`` (0-based): linear warm-up, then cosine or flat."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _find_resume(cfg: DistillConfig) -> Path | None:
    if cfg.resume == "none":
        return None
    if cfg.resume == "latest":
        found = last_checkpoint(cfg.output)
        return found[1] if found else None
    path = Path(cfg.resume)
    if not is_complete_checkpoint(path):
        raise MagicBokehError(
            f"--resume {cfg.resume} is not a complete checkpoint-STEP folder (it needs the COMPLETE marker); "
            "pass one, 'latest' or 'none'."
        )
    return path


def _validate(student: Any, teacher: Any, taps: tuple[FeatureTap, FeatureTap], loader: Any, cfg: DistillConfig,
              device: Any, teacher_dtype: Any) -> dict[str, float]:
    """Mean losses and AbsRel (student on degraded vs teacher on clean) over the validation set."""
    import torch

    was_training = student.training
    student.eval()
    sums = {"val_loss": 0.0, "val_loss_feature": 0.0, "val_loss_output": 0.0, "val_absrel": 0.0}
    images = 0
    with torch.no_grad():
        for batch in loader:
            clean = batch["clean"].to(device)
            degraded = batch["degraded"].to(device)
            n = clean.shape[0]
            losses = distillation_losses(student, teacher, taps, clean, degraded, cfg, teacher_dtype=teacher_dtype)
            s_pred, t_pred = losses.student_disparity.float(), losses.teacher_disparity
            sums["val_loss"] += float(losses.total) * n
            sums["val_loss_feature"] += float(losses.feature) * n
            sums["val_loss_output"] += float(losses.output) * n
            sums["val_absrel"] += float(absrel_against_teacher(s_pred, t_pred).sum())
            images += n
    student.train(was_training)
    out = {k: v / max(images, 1) for k, v in sums.items()}
    out["val_images"] = images
    return out


def _copy_preprocessor(resolved: str, folder: Path) -> None:
    """Copy the teacher's ``preprocessor_config.json`` (local folder or hub cache) into ``folder``."""
    local = Path(resolved) / "preprocessor_config.json"
    source: str | None = str(local) if local.is_file() else None
    if source is None and not Path(resolved).exists():
        from .. import hub

        source = hub.cached_file(resolved, "preprocessor_config.json")
    if source:
        shutil.copyfile(source, folder / "preprocessor_config.json")
    else:
        logger.warning("the teacher has no preprocessor_config.json; %s gets none", folder)


def _save_final(student: Any, resolved: str, cfg: DistillConfig, step: int) -> Path:
    final = Path(cfg.output) / "final"
    with publish_folder(final) as tmp:
        student.save_pretrained(tmp)
        _copy_preprocessor(resolved, tmp)
        (tmp / "distill_info.json").write_text(json.dumps(
            {"teacher": cfg.teacher, "step": step, "degradation": cfg.degradation,
             "degradation_scale": cfg.degradation_scale, "crop": cfg.crop}, indent=2) + "\n")
    return final


def train(cfg: DistillConfig) -> Path:
    """Run (or resume) the distillation described by ``cfg``; returns the ``final/`` folder."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .image_folder import EpochSampler, ImageFolderPairs

    # 1. Check inputs before anything heavy.
    check_config(cfg)
    out = Path(cfg.output)

    # 2. Accelerator and models.
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision)
    set_seed(cfg.seed)
    main = accelerator.is_main_process
    teacher, resolved = load_teacher(cfg.teacher)
    patch = _patch_size(teacher)
    if cfg.crop % patch:
        raise MagicBokehError(f"--crop {cfg.crop} must be a multiple of the patch size {patch} (e.g. 518).")
    student = copy.deepcopy(teacher)
    for model in (teacher, student):
        _install_upstream_position_embeddings(model)
    teacher.requires_grad_(False)
    student.requires_grad_(True)
    student.train()
    frozen = freeze_unused_parameters(student, size=4 * patch)
    logger.debug("parameters without a gradient path, frozen: %s", frozen)
    teacher_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
    teacher.to(accelerator.device, dtype=teacher_dtype or torch.float32)
    taps = (FeatureTap(student.backbone), FeatureTap(teacher.backbone))

    # 3. Data.
    degrade_fn = PresetDegradation(cfg.degradation, cfg.degradation_scale)
    dataset = ImageFolderPairs(cfg.images, crop=cfg.crop, degrade_fn=degrade_fn, seed=cfg.seed, train=True)
    per_step = cfg.batch_size * accelerator.num_processes
    if len(dataset) < per_step:
        raise MagicBokehError(
            f"{len(dataset)} readable images in {cfg.images} but one batch over {accelerator.num_processes} "
            f"process(es) needs {per_step}; add images or lower --batch-size."
        )
    sampler = EpochSampler(len(dataset), seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                        num_workers=cfg.num_workers, drop_last=True, pin_memory=torch.cuda.is_available(),
                        persistent_workers=False)
    val_loader = None
    if cfg.val_images:
        val_set = ImageFolderPairs(cfg.val_images, crop=cfg.crop, degrade_fn=degrade_fn, seed=cfg.seed, train=False)
        val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)

    # 4. Optimizer and schedule (accelerate steps a prepared scheduler once per process).
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    n_proc = accelerator.num_processes
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_lambda(s // n_proc, total=cfg.steps, warmup=cfg.warmup, schedule=cfg.lr_schedule)
    )
    student, optimizer, loader, scheduler = accelerator.prepare(student, optimizer, loader, scheduler)

    # Model weights live next to the accelerate state as safetensors (save_pretrained), not in it.
    def _save_hook(models: list, weights: list, output_dir: str) -> None:
        weights.clear()

    def _load_hook(models: list, input_dir: str) -> None:
        from transformers import AutoModelForDepthEstimation

        saved = AutoModelForDepthEstimation.from_pretrained(Path(input_dir).parent, dtype=torch.float32)
        accelerator.unwrap_model(student).load_state_dict(saved.state_dict())
        models.clear()

    accelerator.register_save_state_pre_hook(_save_hook)
    accelerator.register_load_state_pre_hook(_load_hook)

    # 5. Resume.
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
    accelerator.wait_for_everyone()
    step, epoch, batch_in_epoch = 0, 0, 0
    resume_from = _find_resume(cfg)
    if resume_from is not None:
        state = json.loads((resume_from / TRAINER_STATE).read_text())
        for key in _RESUME_KEYS:
            if key in state.get("config", {}) and state["config"][key] != getattr(cfg, key):
                logger.warning("--%s changed since the checkpoint (%s -> %s): the continuation is not exact",
                               key.replace("_", "-"), state["config"][key], getattr(cfg, key))
        accelerator.load_state(str(resume_from / "state"))
        step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        if main:
            logger.info("resuming from %s (step %d)", resume_from, step)
    metrics = MetricsLog(out / METRICS, resume_step=step if resume_from is not None else None) if main else None
    if main:
        info = {"teacher": cfg.teacher, "teacher_resolved": resolved, "images": len(dataset),
                "skipped_images": len(dataset.skipped), "skipped": [str(p) for p in dataset.skipped],
                "processes": accelerator.num_processes, "config": _config_record(cfg)}
        publish_text(out / RUN_INFO, json.dumps(info, indent=2) + "\n")
        logger.info("distilling %s on %d images (%d unreadable skipped), %d process(es), %d steps",
                    cfg.teacher, len(dataset), len(dataset.skipped), accelerator.num_processes, cfg.steps)

    def save_checkpoint() -> None:
        with atomic_checkpoint(out, step, is_main_process=main, wait=accelerator.wait_for_everyone) as tmp:
            if main:
                accelerator.unwrap_model(student).save_pretrained(tmp)
                (tmp / TRAINER_STATE).write_text(json.dumps(
                    {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                     "config": _config_record(cfg)}, indent=2) + "\n")
            accelerator.save_state(str(tmp / "state"))
        if main:
            prune_checkpoints(out, cfg.keep_checkpoints)

    def validate() -> None:
        if val_loader is not None and main:
            record = {"step": step, **_validate(accelerator.unwrap_model(student), teacher, taps, val_loader, cfg,
                                                accelerator.device, teacher_dtype)}
            metrics.write(record)
            logger.info("step %d: val_loss %.5f, val_absrel %.5f", step, record["val_loss"], record["val_absrel"])
        accelerator.wait_for_everyone()

    # 6. Train.
    if step == 0 and resume_from is None:
        validate()  # the teacher on degraded inputs: the baseline the student must beat
    progress = tqdm(total=cfg.steps, initial=step, desc="distilling", unit="step", disable=not main,
                    file=sys.stderr, dynamic_ncols=True)
    sums = torch.zeros(4, device=accelerator.device, dtype=torch.float64)  # total, feature, output, count
    started = time.time()
    while step < cfg.steps:
        # The epoch seeds both the order and every sample's crop/flip/degradation. accelerate's
        # set_epoch reaches only one of sampler and dataset, so set both explicitly.
        loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, batch_in_epoch) if batch_in_epoch else loader
        for batch in batches:
            with accelerator.accumulate(student):
                losses = distillation_losses(student, teacher, taps, batch["clean"], batch["degraded"], cfg,
                                             teacher_dtype=teacher_dtype)
                accelerator.backward(losses.total)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            batch_in_epoch += 1
            sums += torch.stack([losses.total.detach().double(), losses.feature.detach().double(),
                                 losses.output.detach().double(), torch.ones((), dtype=torch.float64,
                                                                             device=sums.device)])
            if not accelerator.sync_gradients:
                continue
            step += 1
            progress.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                total = accelerator.reduce(sums, reduction="sum")
                n = max(float(total[3]), 1.0)
                record = {"step": step, "loss": float(total[0]) / n, "loss_feature": float(total[1]) / n,
                          "loss_output": float(total[2]) / n, "lr": float(scheduler.get_last_lr()[0]),
                          "epoch": epoch, "elapsed_s": round(time.time() - started, 3)}
                sums.zero_()
                if main:
                    metrics.write(record)
                    progress.set_postfix(loss=f"{record['loss']:.4f}")
            if step % cfg.val_every == 0 or step == cfg.steps:
                validate()
            if step % cfg.save_every == 0 or step == cfg.steps:
                save_checkpoint()
            if step >= cfg.steps:
                break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
    progress.close()
    for tap in taps:
        tap.remove()

    # 7. Final transformers folder.
    final = Path(cfg.output) / "final"
    accelerator.wait_for_everyone()
    if main:
        final = _save_final(accelerator.unwrap_model(student), resolved, cfg, step)
        logger.info("done: %s (use it with --depth-model %s)", final, final)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _config_record(cfg: DistillConfig) -> dict[str, Any]:
    record = asdict(cfg)
    record.pop("extra", None)
    return record


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m magicbokeh.train.depth_distill`` argument parser."""
    d = DistillConfig(teacher="", images="", output="")
    p = argparse.ArgumentParser(
        prog="python -m magicbokeh.train.depth_distill",
        description="Distil a degradation-aware Depth Anything V2 student (DA depth) from a frozen teacher. "
                    "Runs as is or under `accelerate launch`.",
    )
    p.add_argument("--teacher", required=True,
                   help="frozen teacher: transformers folder, hub id, Depth Anything V2 .pth, or 'dadepth'")
    p.add_argument("--images", required=True, help="folder of training photos (recursive; jpg/png/webp/bmp)")
    p.add_argument("--output", required=True, help="run folder: checkpoints, final/, metrics.jsonl (reruns resume)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"crops per process and micro-batch "
                   f"(default {d.batch_size})")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak AdamW learning rate (default {d.lr:g})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (default 0.01)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="after the linear warm-up: cosine decay to 0, or constant (default cosine)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default 5%% of --steps)")
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm,
                   help="clip the gradient norm (default 1; 0 = off)")
    p.add_argument("--crop", type=int, default=d.crop, help="square crop side in px, a multiple of 14 (default 518)")
    p.add_argument("--val-images", default=None, help="folder of validation photos (centred crops, fixed degradation)")
    p.add_argument("--val-every", type=int, default=d.val_every, help=f"validate every N steps (default {d.val_every})")
    p.add_argument("--save-every", type=int, default=d.save_every,
                   help=f"checkpoint every N steps (default {d.save_every})")
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints,
                   help="keep the newest N checkpoints (default 3; 0 = all)")
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help=f"write a metrics.jsonl line every N steps (default {d.log_every})")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision,
                   help="autocast precision (default no = float32)")
    p.add_argument("--feature-weight", type=float, default=d.feature_weight,
                   help="weight of the encoder-feature MSE (default 1)")
    p.add_argument("--output-weight", type=float, default=d.output_weight,
                   help="weight of the scale-and-shift-invariant output L1 (default 1)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of data order, crops and degradations (default 0)")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="data-loader workers per process (default 4)")
    p.add_argument("--degradation", choices=DEGRADATIONS, default=d.degradation,
                   help="degradation of the student's input (default realesrgan)")
    p.add_argument("--degradation-scale", type=float, default=d.degradation_scale,
                   help="resolution loss of the degradation, in [1, 16] (default 4)")
    p.add_argument("--resume", default=d.resume,
                   help="'latest' (default: the last complete checkpoint in --output), 'none', or a checkpoint folder")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    """The :class:`DistillConfig` of parsed CLI arguments."""
    return DistillConfig(
        teacher=args.teacher, images=args.images, output=args.output, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
        max_grad_norm=args.max_grad_norm, crop=args.crop, val_images=args.val_images, val_every=args.val_every,
        save_every=args.save_every, keep_checkpoints=args.keep_checkpoints, log_every=args.log_every,
        grad_accum=args.grad_accum, mixed_precision=args.mixed_precision, feature_weight=args.feature_weight,
        output_weight=args.output_weight, seed=args.seed, num_workers=args.num_workers,
        degradation=args.degradation, degradation_scale=args.degradation_scale, resume=args.resume,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 2 on bad input (one line on stderr)."""
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0") or 0)
    level = logging.DEBUG if args.verbose else (logging.INFO if rank == 0 else logging.WARNING)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("magicbokeh").setLevel(level)

    def work() -> int:
        train(config_from_args(args))
        return 0

    return run_command(work, verbose=args.verbose,
                       interrupted="interrupted; rerun the same command to resume from the last checkpoint")


__all__ = [
    "DistillConfig",
    "FeatureTap",
    "PresetDegradation",
    "absrel_against_teacher",
    "align_least_squares",
    "build_parser",
    "check_config",
    "distillation_losses",
    "feature_distillation_loss",
    "freeze_unused_parameters",
    "load_teacher",
    "main",
    "resolve_teacher",
    "scale_shift_invariant_loss",
    "train",
]


if __name__ == "__main__":
    sys.exit(main())
