"""The DA-depth distillation loop: set-up, resume, optimizer steps, validation, checkpoints, export.

:func:`train` runs in numbered steps (check, models, data, optimizer, resume, train, export); the
state of a run lives in :class:`DistillRun`. Checkpoints and the final folder are published
atomically (``train.common.atomic_checkpoint``, ``magicbokeh.publish``), so a rerun resumes exactly.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from .depth_distill_config import METRICS, RESUME_KEYS, RUN_INFO, TRAINER_STATE, DistillConfig, check_config, config_record
from .depth_distill_data import DistillData, build_data
from .depth_distill_losses import absrel_against_teacher, distillation_losses
from .depth_distill_model import (
    FeatureTap,
    freeze_unused_parameters,
    install_upstream_position_embeddings,
    load_teacher,
    patch_size,
)
from .resume_files import damaged_checkpoint, read_state_json

logger = logging.getLogger(__name__)


def lr_lambda(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate factor at scheduler step ``step`` (0-based): linear warm-up, then cosine or flat."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def find_resume(cfg: DistillConfig) -> Path | None:
    """The checkpoint ``--resume`` names: the last complete one (``latest``), none, or a given folder."""
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


# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------


@dataclass
class DistillModels:
    """The frozen teacher, the trainable student (a copy), their feature taps and the teacher's dtype."""

    teacher: Any
    student: Any
    resolved: str  # the teacher's source (hub id or folder)
    taps: tuple[FeatureTap, FeatureTap]  # (student, teacher)
    teacher_dtype: Any  # torch dtype of the teacher's forward, None = float32


def build_models(cfg: DistillConfig, device: Any) -> DistillModels:
    """Load the teacher, copy it into the student, and freeze what must not train."""
    import torch

    teacher, resolved = load_teacher(cfg.teacher)
    patch = patch_size(teacher)
    if cfg.crop % patch:
        raise MagicBokehError(f"--crop {cfg.crop} must be a multiple of the patch size {patch} (e.g. 518).")
    student = copy.deepcopy(teacher)
    for model in (teacher, student):
        install_upstream_position_embeddings(model)
    teacher.requires_grad_(False)
    student.requires_grad_(True)
    student.train()
    frozen = freeze_unused_parameters(student, size=4 * patch)
    logger.debug("parameters without a gradient path, frozen: %s", frozen)
    teacher_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision)
    teacher.to(device, dtype=teacher_dtype or torch.float32)
    taps = (FeatureTap(student.backbone), FeatureTap(teacher.backbone))
    return DistillModels(teacher, student, resolved, taps, teacher_dtype)


def build_optimizer(cfg: DistillConfig, student: Any, num_processes: int) -> tuple[Any, Any]:
    """AdamW over the trainable parameters and its warm-up + cosine/constant schedule.

    accelerate steps a prepared scheduler once per process, hence the division by ``num_processes``.
    """
    import torch

    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_lambda(s // num_processes, total=cfg.steps, warmup=cfg.warmup, schedule=cfg.lr_schedule),
    )
    return optimizer, scheduler


def register_weight_hooks(accelerator: Any, models: DistillModels) -> None:
    """Model weights live next to the accelerate state as safetensors (save_pretrained), not in it."""
    import torch

    def _save_hook(hooked: list, weights: list, output_dir: str) -> None:
        weights.clear()

    def _load_hook(hooked: list, input_dir: str) -> None:
        from transformers import AutoModelForDepthEstimation

        saved = AutoModelForDepthEstimation.from_pretrained(Path(input_dir).parent, dtype=torch.float32)
        accelerator.unwrap_model(models.student).load_state_dict(saved.state_dict())
        hooked.clear()

    accelerator.register_save_state_pre_hook(_save_hook)
    accelerator.register_load_state_pre_hook(_load_hook)


# ---------------------------------------------------------------------------------------------
# Validation and export
# ---------------------------------------------------------------------------------------------


def validate_student(student: Any, teacher: Any, taps: tuple[FeatureTap, FeatureTap], loader: Any,
                     cfg: DistillConfig, device: Any, teacher_dtype: Any) -> dict[str, float]:
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


def copy_preprocessor(resolved: str, folder: Path) -> None:
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


def save_final(student: Any, resolved: str, cfg: DistillConfig, step: int) -> Path:
    """Publish ``OUTPUT/final``: a transformers folder for ``--depth-model``, plus distill_info.json."""
    final = Path(cfg.output) / "final"
    with publish_folder(final) as tmp:
        student.save_pretrained(tmp)
        copy_preprocessor(resolved, tmp)
        (tmp / "distill_info.json").write_text(json.dumps(
            {"teacher": cfg.teacher, "step": step, "degradation": cfg.degradation,
             "degradation_scale": cfg.degradation_scale, "crop": cfg.crop, "field_of_view": cfg.field_of_view},
            indent=2) + "\n")
    return final


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class DistillRun:
    """One distillation run after set-up: its position (step, epoch, batch), metrics and checkpoints."""

    def __init__(self, cfg: DistillConfig, accelerator: Any, models: DistillModels, data: DistillData,
                 optimizer: Any, scheduler: Any) -> None:
        self.cfg, self.acc, self.models, self.data = cfg, accelerator, models, data
        self.optimizer, self.scheduler = optimizer, scheduler
        self.out = Path(cfg.output)
        self.main = accelerator.is_main_process
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.resumed_from: Path | None = None
        self.metrics: MetricsLog | None = None

    def resume(self) -> None:
        """Clean half-written checkpoints, restore the last complete one, open the metrics log."""
        cfg, acc = self.cfg, self.acc
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out)
        acc.wait_for_everyone()
        self.resumed_from = find_resume(cfg)
        if self.resumed_from is not None:
            state = read_state_json(self.resumed_from / TRAINER_STATE)
            for key in RESUME_KEYS:
                if key in state.get("config", {}) and state["config"][key] != getattr(cfg, key):
                    logger.warning("--%s changed since the checkpoint (%s -> %s): the continuation is not exact",
                                   key.replace("_", "-"), state["config"][key], getattr(cfg, key))
            with damaged_checkpoint(self.resumed_from, "trainer or optimizer state"):
                acc.load_state(str(self.resumed_from / "state"))
                self.step, self.epoch = int(state["step"]), int(state["epoch"])
                self.batch_in_epoch = int(state["batch_in_epoch"])
            if self.main:
                logger.info("resuming from %s (step %d)", self.resumed_from, self.step)
        if self.main:
            resume_step = self.step if self.resumed_from is not None else None
            self.metrics = MetricsLog(self.out / METRICS, resume_step=resume_step)
            dataset = self.data.dataset
            info = {"teacher": cfg.teacher, "teacher_resolved": self.models.resolved, "images": len(dataset),
                    "skipped_images": len(dataset.skipped), "skipped": [str(p) for p in dataset.skipped],
                    "processes": acc.num_processes, "config": config_record(cfg)}
            publish_text(self.out / RUN_INFO, json.dumps(info, indent=2) + "\n")
            logger.info("distilling %s on %d images (%d unreadable skipped), %d process(es), %d steps",
                        cfg.teacher, len(dataset), len(dataset.skipped), acc.num_processes, cfg.steps)

    def save_checkpoint(self) -> None:
        """Publish ``checkpoint-STEP``: student weights, trainer state, accelerate state."""
        acc = self.acc
        with atomic_checkpoint(self.out, self.step, is_main_process=self.main, wait=acc.wait_for_everyone) as tmp:
            if self.main:
                acc.unwrap_model(self.models.student).save_pretrained(tmp)
                (tmp / TRAINER_STATE).write_text(json.dumps(
                    {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                     "config": config_record(self.cfg)}, indent=2) + "\n")
            acc.save_state(str(tmp / "state"))
        if self.main:
            prune_checkpoints(self.out, self.cfg.keep_checkpoints)

    def validate(self) -> None:
        """Score the student on the validation set (main process) and log it."""
        m, acc = self.models, self.acc
        if self.data.val_loader is not None and self.main:
            record = {"step": self.step, **validate_student(acc.unwrap_model(m.student), m.teacher, m.taps,
                                                             self.data.val_loader, self.cfg, acc.device,
                                                             m.teacher_dtype)}
            self.metrics.write(record)
            logger.info("step %d: val_loss %.5f, val_absrel %.5f", self.step, record["val_loss"], record["val_absrel"])
        acc.wait_for_everyone()

    def fit(self) -> None:
        """Optimizer steps until ``cfg.steps``, with logging, validation and checkpoints on schedule."""
        import torch
        from tqdm.auto import tqdm

        cfg, acc, m = self.cfg, self.acc, self.models
        if self.step == 0 and self.resumed_from is None:
            self.validate()  # the teacher on degraded inputs: the baseline the student must beat
        progress = tqdm(total=cfg.steps, initial=self.step, desc="distilling", unit="step", disable=not self.main,
                        file=sys.stderr, dynamic_ncols=True)
        sums = torch.zeros(4, device=acc.device, dtype=torch.float64)  # total, feature, output, count
        started = time.time()
        while self.step < cfg.steps:
            self.data.set_epoch(self.epoch)
            loader = self.data.loader
            batches = acc.skip_first_batches(loader, self.batch_in_epoch) if self.batch_in_epoch else loader
            for batch in batches:
                with acc.accumulate(m.student):
                    losses = distillation_losses(m.student, m.teacher, m.taps, batch["clean"], batch["degraded"],
                                                 cfg, teacher_dtype=m.teacher_dtype)
                    acc.backward(losses.total)
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(m.student.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.batch_in_epoch += 1
                sums += torch.stack([losses.total.detach().double(), losses.feature.detach().double(),
                                     losses.output.detach().double(), torch.ones((), dtype=torch.float64,
                                                                                 device=sums.device)])
                if not acc.sync_gradients:
                    continue
                self.step += 1
                progress.update(1)
                self._after_step(sums, started, progress)
                if self.step >= cfg.steps:
                    break
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        progress.close()
        for tap in m.taps:
            tap.remove()

    def _after_step(self, sums: Any, started: float, progress: Any) -> None:
        """Log the mean losses since the last record, validate and checkpoint when due."""
        cfg, step = self.cfg, self.step
        if step % cfg.log_every == 0 or step == cfg.steps:
            total = self.acc.reduce(sums, reduction="sum")
            n = max(float(total[3]), 1.0)
            record = {"step": step, "loss": float(total[0]) / n, "loss_feature": float(total[1]) / n,
                      "loss_output": float(total[2]) / n, "lr": float(self.scheduler.get_last_lr()[0]),
                      "epoch": self.epoch, "elapsed_s": round(time.time() - started, 3)}
            sums.zero_()
            if self.main:
                self.metrics.write(record)
                progress.set_postfix(loss=f"{record['loss']:.4f}")
        if step % cfg.val_every == 0 or step == cfg.steps:
            self.validate()
        if step % cfg.save_every == 0 or step == cfg.steps:
            self.save_checkpoint()

    def finish(self) -> Path:
        """Publish the final transformers folder and end the accelerate session; returns the folder."""
        acc = self.acc
        final = self.out / "final"
        acc.wait_for_everyone()
        if self.main:
            final = save_final(acc.unwrap_model(self.models.student), self.models.resolved, self.cfg, self.step)
            logger.info("done: %s (use it with --depth-model %s)", final, final)
        acc.wait_for_everyone()
        acc.end_training()
        return final


def train(cfg: DistillConfig) -> Path:
    """Run (or resume) the distillation described by ``cfg``; returns the ``final/`` folder."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # 1. Check inputs before anything heavy.
    check_config(cfg)

    # 2. Accelerator and models.
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision)
    set_seed(cfg.seed)
    models = build_models(cfg, accelerator.device)

    # 3. Data.
    data = build_data(cfg, accelerator.num_processes)

    # 4. Optimizer and schedule, prepared by accelerate.
    optimizer, scheduler = build_optimizer(cfg, models.student, accelerator.num_processes)
    models.student, optimizer, data.loader, scheduler = accelerator.prepare(
        models.student, optimizer, data.loader, scheduler)
    register_weight_hooks(accelerator, models)

    # 5. Resume, 6. train, 7. final transformers folder.
    run = DistillRun(cfg, accelerator, models, data, optimizer, scheduler)
    run.resume()
    run.fit()
    return run.finish()


__all__ = ["DistillModels", "DistillRun", "build_models", "build_optimizer", "copy_preprocessor", "find_resume",
           "lr_lambda", "register_weight_hooks", "save_final", "train", "validate_student"]
