"""Configuration of the DA-depth distillation: :class:`DistillConfig`, its checks, names of run files."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MagicBokehError

DEGRADATIONS = ("realesrgan", "zoom")
LR_SCHEDULES = ("cosine", "constant")
MIXED_PRECISION = ("no", "fp16", "bf16")
TRAINER_STATE = "trainer_state.json"
RUN_INFO = "run_info.json"
METRICS = "metrics.jsonl"
#: Where crops are taken (``image_folder.FIELDS_OF_VIEW``): ``inference`` = the photo resized as Depth
#: Anything's inference resizes it (short side = --crop), then cropped; ``native`` = at its own resolution.
FIELDS_OF_VIEW = ("inference", "native")
#: Arguments that must not change between an interrupted run and its resumption for exactness.
RESUME_KEYS = ("batch_size", "grad_accum", "crop", "seed", "degradation", "degradation_scale", "field_of_view")


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
    field_of_view: str = "inference"
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
    if not 0 < cfg.lr < float("inf"):  # NaN fails the comparison
        raise MagicBokehError(f"--lr {cfg.lr} must be a finite positive number (the default is 5e-6).")
    if not (0 <= cfg.feature_weight < float("inf") and 0 <= cfg.output_weight < float("inf")) \
            or cfg.feature_weight + cfg.output_weight == 0:
        raise MagicBokehError("--feature-weight and --output-weight must be finite, >= 0 and not both 0.")
    if cfg.num_workers < 0:
        raise MagicBokehError(f"--num-workers {cfg.num_workers} must be >= 0 (0 loads in the main process).")
    if cfg.warmup_steps is not None and cfg.warmup_steps < 0:
        raise MagicBokehError(f"--warmup-steps {cfg.warmup_steps} must be >= 0.")
    if cfg.field_of_view not in FIELDS_OF_VIEW:
        raise MagicBokehError(f"--field-of-view {cfg.field_of_view!r}: use one of {', '.join(FIELDS_OF_VIEW)}.")
    if cfg.field_of_view == "inference" and cfg.crop % 14:
        raise MagicBokehError(f"--crop {cfg.crop} must be a multiple of the patch size 14 (e.g. 518): with "
                              "--field-of-view inference it is Depth Anything's input size.")
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


def config_record(cfg: DistillConfig) -> dict[str, Any]:
    """The config as recorded in run_info.json and checkpoints (JSON-ready, without ``extra``)."""
    record = asdict(cfg)
    record.pop("extra", None)
    return record


__all__ = ["DEGRADATIONS", "FIELDS_OF_VIEW", "LR_SCHEDULES", "METRICS", "MIXED_PRECISION", "RESUME_KEYS", "RUN_INFO",
           "TRAINER_STATE", "DistillConfig", "check_config", "config_record"]
