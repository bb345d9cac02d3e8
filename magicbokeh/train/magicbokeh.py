"""Train MagicBokeh: SR pre-training, then alternating bokeh and Real-ISR steps (paper §"alternative
training strategy"), on accelerate.

Usage (one device, or the same arguments after ``accelerate launch -m``)::

    python -m magicbokeh.train.magicbokeh --config configs/train_magicbokeh.yaml --output runs/mb \\
        [--base ID|DIR] [--max-steps N] [section.key=value ...]

Phases (``Config.phase_at``): ``sr_pretrain`` for ``schedule.sr_pretrain_steps`` steps, then cycles of
``schedule.bokeh_steps`` bokeh steps and ``schedule.isr_steps`` Real-ISR steps. Each phase has its own
AdamW (learning rates 5e-5 / 5e-5 / 5e-6) over its own parameters (``magicbokeh_model.PHASE_PARTS``);
everything else is frozen and stays bitwise unchanged. The bokeh phase feeds the defocus map
``|d − f|·K/32`` and the in-focus mask; the Real-ISR and SR phases an all-zero defocus map and no
attention mask. Loss ``l2_weight · MSE + lpips_weight · LPIPS`` in pixel space; with ``loss.lpips_weight`` > 0 and
no working ``lpips`` (requirements-train.txt) the run stops before step 1 with exit 2.

Output folder::

    DIR/train_config.yaml     the resolved configuration
    DIR/metrics.jsonl         one JSON line per logged step: step, phase, loss, loss_l2[, loss_lpips], lr, ...
    DIR/samples/step-N/       validation renders (input | output | target PNGs), PSNR in metrics.jsonl
    DIR/checkpoint-N/         trained weights (safetensors + config.json, loadable with --checkpoint)
                              + resume/ (optimizer states as safetensors, trainer_state.json) [+ ema/]
    DIR/final/                the exported weights (EMA weights when train.ema is on)

A rerun of the same command resumes from the last complete checkpoint (``train.common``); the
losses after resuming equal those of an uninterrupted run, because every sample, crop, degradation
and posterior noise is a function of (seed, step) only. No pickle is written.

Code by concern: ``magicbokeh_config`` (YAML config), ``magicbokeh_model`` (network, phases),
``magicbokeh_tiny`` (the tiny test base), ``magicbokeh_data`` (pairs and draw streams),
``magicbokeh_losses``, ``magicbokeh_checkpoint`` (save, resume, export), ``magicbokeh_loop``
(:class:`Trainer`); this module is the command line and re-exports their public names.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..entrypoint import run_command
from .magicbokeh_checkpoint import EMA_DIR, FINAL_DIR, RESUME_DIR
from .magicbokeh_config import load_config
from .magicbokeh_losses import posterior_noise
from .magicbokeh_loop import TINY_BASE_DIR, TrainResult, Trainer, counts_before, train
from .magicbokeh_tiny import SD21_SCHEDULER, TINY_UNET, TINY_VAE, make_tiny_base

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m magicbokeh.train.magicbokeh`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m magicbokeh.train.magicbokeh",
        description="Train MagicBokeh (SR pre-training, then alternating bokeh / Real-ISR steps).",
    )
    parser.add_argument("--config", required=True, help="YAML config (configs/train_magicbokeh.yaml, configs/train_tiny.yaml)")
    parser.add_argument("--output", required=True, help="run folder (checkpoints, metrics.jsonl, samples, final/)")
    parser.add_argument("--base", help="SD2.1-base repo id or folder (overrides the config's base; 'tiny' = random tiny model)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (schedule.max_steps)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr_bokeh=1e-5")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 2 on bad input (one line on stderr)."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    def work() -> int:
        config = load_config(args.config, args.overrides)
        if args.base:
            config.base = args.base
        if args.max_steps is not None:
            config.schedule.max_steps = args.max_steps
        result = train(config, args.output, progress=not args.quiet)
        if result.final is not None:
            print(f"trained to step {result.step}; weights in {result.final} (render with: python -m "
                  f"magicbokeh render PHOTO -o OUT.png --backend magicbokeh --checkpoint {result.final})")
        return 0

    return run_command(work, verbose=args.verbose,
                       interrupted="interrupted; rerun the same command to resume from the last complete checkpoint")


__all__ = [
    "EMA_DIR",
    "FINAL_DIR",
    "RESUME_DIR",
    "SD21_SCHEDULER",
    "TINY_BASE_DIR",
    "TINY_UNET",
    "TINY_VAE",
    "TrainResult",
    "Trainer",
    "build_parser",
    "counts_before",
    "main",
    "make_tiny_base",
    "posterior_noise",
    "train",
]


if __name__ == "__main__":
    sys.exit(main())
