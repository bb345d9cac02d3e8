"""Self-feature distillation of a degradation-aware Depth Anything V2 student ("DA depth").

MagicBokeh (supplement §1) makes its depth model robust to low-quality photos this way: a frozen
Depth Anything V2 teacher sees a clean crop, an identically initialised student sees a degraded copy
(Real-ESRGAN pipeline), and the student learns to reproduce the teacher's encoder features and its
prediction. The paper states neither the loss forms, the layers nor the weights; the choices below
are ours and every one of them is an option.

Crops are taken at the field of view inference sees (``--field-of-view inference``, the default):
each photo is first resized as Depth Anything's preprocessing resizes it (short side = ``--crop``,
OpenCV cubic), then cropped, so a 518 crop of a 12 MP photo holds most of the frame, as at inference,
rather than a small native-resolution patch (``--field-of-view native``).

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

    python -m magicbokeh.train.depth_distill --teacher large --images SA1B/ --output runs/da
    accelerate launch --multi_gpu --num_processes 4 -m magicbokeh.train.depth_distill ...

Outputs in ``--output``: ``checkpoint-STEP/`` (student ``model.safetensors`` + ``config.json``,
``trainer_state.json``, accelerate state in ``state/``), ``final/`` (a transformers folder for
``--depth-model``), ``metrics.jsonl`` and ``run_info.json``. A rerun with the same ``--output``
resumes from the last complete checkpoint; the continuation is exact (same data, same numbers).

The code is split by concern: ``depth_distill_config`` (options and checks), ``depth_distill_model``
(teacher, student, feature taps), ``depth_distill_losses``, ``depth_distill_data`` (crops and
degradations), ``depth_distill_loop`` (:func:`train`); this module is the command line and
re-exports their public names.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..entrypoint import run_command
from .depth_distill_config import (
    DEGRADATIONS,
    FIELDS_OF_VIEW,
    LR_SCHEDULES,
    METRICS,
    MIXED_PRECISION,
    RUN_INFO,
    TRAINER_STATE,
    DistillConfig,
    check_config,
)
from .depth_distill_data import PresetDegradation
from .depth_distill_loop import find_resume, lr_lambda, train
from .depth_distill_losses import (
    StepLosses,
    absrel_against_teacher,
    align_least_squares,
    distillation_losses,
    feature_distillation_loss,
    normalise_median_mad,
    scale_shift_invariant_loss,
)
from .depth_distill_model import FeatureTap, freeze_unused_parameters, load_teacher, resolve_teacher

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m magicbokeh.train.depth_distill`` argument parser."""
    d = DistillConfig(teacher="", images="", output="")
    p = argparse.ArgumentParser(
        prog="python -m magicbokeh.train.depth_distill",
        description="Distil a degradation-aware Depth Anything V2 student (DA depth) from a frozen teacher. "
                    "Runs as is or under `accelerate launch`.",
    )
    p.add_argument("--teacher", required=True,
                   help="frozen teacher: 'large' (the paper's pre-trained Depth Anything V2 Large), another "
                        "name, a transformers folder, hub id, Depth Anything V2 .pth, or 'dadepth'")
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
    p.add_argument("--field-of-view", choices=FIELDS_OF_VIEW, default=d.field_of_view,
                   help="inference (default): resize each photo as Depth Anything's inference does (short side "
                        "= --crop), then crop; native: crop at the photo's own resolution")
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
        max_grad_norm=args.max_grad_norm, crop=args.crop, field_of_view=args.field_of_view,
        val_images=args.val_images, val_every=args.val_every,
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
    "DEGRADATIONS",
    "FIELDS_OF_VIEW",
    "LR_SCHEDULES",
    "METRICS",
    "MIXED_PRECISION",
    "RUN_INFO",
    "TRAINER_STATE",
    "DistillConfig",
    "FeatureTap",
    "PresetDegradation",
    "StepLosses",
    "absrel_against_teacher",
    "align_least_squares",
    "build_parser",
    "check_config",
    "config_from_args",
    "distillation_losses",
    "feature_distillation_loss",
    "find_resume",
    "freeze_unused_parameters",
    "load_teacher",
    "lr_lambda",
    "main",
    "normalise_median_mad",
    "resolve_teacher",
    "scale_shift_invariant_loss",
    "train",
]


if __name__ == "__main__":
    sys.exit(main())
