"""Depth evaluation as in the supplement's Table 1: AbsRel and δ1 on clear and degraded inputs.

``python -m magicbokeh.eval.depth --data nyu:/data/nyu --data real --model dadepth --model small -o table.md``

Every model predicts relative disparity for each frame, as given ("clear") and after a fixed-seed
Real-ESRGAN-style degradation ("degrade", seed = ``--seed`` + the frame's position in the dataset's
ordered list, so every model sees the same degraded inputs). Each prediction is aligned to the
ground truth by a least-squares scale and shift in disparity space and scored on the dataset's
crop and depth range (:mod:`magicbokeh.eval.depth_metrics`); the table reports per-image means,
and "Average" = the mean of the two conditions. Frames are sharded by index over ``--workers``
processes or a Ray cluster (:func:`magicbokeh.parallel.map_indexed`); each process loads a model
once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..entrypoint import configure_logging, run_command
from ..errors import MagicBokehError
from ..publish import publish_text
from .depth_data import SKIP_MISSING, SKIP_NO_GT, Dataset, DatasetInfo, Sample, load_sample, open_dataset
from .depth_metrics import evaluate_disparity, mean_metrics, valid_mask

logger = logging.getLogger(__name__)

#: Conditions in the paper's column order.
CONDITIONS: tuple[str, ...] = ("degrade", "clear")
CONDITION_TITLES = {"degrade": "Degrade", "clear": "Clear"}
#: Degradation of the "degrade" condition: preset, scale, and base seed (+ the frame's position).
DEGRADE_PRESET = "realesrgan"
DEGRADE_SCALE = 4.0
DEGRADE_BASE_SEED = 2026
DEFAULT_INPUT_SIZE = 518
PREDICTIONS_PREFIX = "predictions:"
PREDICTION_SUFFIXES = (".npy", ".png")
SKIP_NO_PREDICTION = "missing or unreadable prediction"
METRIC_TITLES = {"abs_rel": "AbsRel", "delta1": "δ1", "delta2": "δ2", "delta3": "δ3", "rmse": "RMSE"}


@dataclass(frozen=True)
class ModelSpec:
    """A model to score: ``spec`` as given on the command line, its table ``label``, and for
    ``predictions:DIR`` the folder of precomputed disparity."""

    spec: str
    label: str
    predictions: str | None = None


@dataclass(frozen=True)
class Job:
    """Everything a worker needs besides the sample (small and picklable, for processes and Ray)."""

    info: DatasetInfo
    models: tuple[ModelSpec, ...]
    conditions: tuple[str, ...]
    input_size: int = DEFAULT_INPUT_SIZE
    seed: int = DEGRADE_BASE_SEED
    save_degraded: str | None = None
    torch_threads: int | None = None  # per local worker process, so W processes share the cores


@dataclass
class SampleResult:
    """One frame's outcome: a data-level skip, or per-model per-condition metrics (and per-model skips)."""

    name: str
    skip: str | None = None
    message: str = ""
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    model_skips: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ models

def _estimator(spec: str, input_size: int, torch_threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The process-wide estimator for a model spec (``get_estimator`` creates it once per process)."""
    from ..depth import get_estimator

    if torch_threads:
        import torch

        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
    return get_estimator(spec, input_size=input_size)


def parse_models(specs: Sequence[str]) -> tuple[ModelSpec, ...]:
    """Model specs → :class:`ModelSpec` with unique labels (name as given; predictions: folder name)."""
    out: list[ModelSpec] = []
    seen: Counter[str] = Counter()
    for spec in specs:
        if spec.startswith(PREDICTIONS_PREFIX):
            folder = Path(spec[len(PREDICTIONS_PREFIX) :]).expanduser()
            if not folder.is_dir():
                raise MagicBokehError(
                    f"{spec}: {folder} is not a folder; expected DIR/NAME.npy|png (or DIR/clear/, DIR/degrade/)."
                )
            label, predictions = folder.resolve().name, str(folder)
        else:
            label, predictions = spec, None
        seen[label] += 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})"
        out.append(ModelSpec(spec, label, predictions))
    return tuple(out)


def _check_model(model: ModelSpec, input_size: int) -> None:
    """Fail before the run when a model cannot be loaded (nothing is downloaded or loaded here)."""
    if model.predictions is not None:
        return
    path = Path(model.spec).expanduser()
    looks_like_path = model.spec.startswith((".", "/", "~")) or model.spec.endswith(".pth") or path.is_absolute()
    if looks_like_path and not path.exists():
        raise MagicBokehError(
            f"--model {model.spec}: no such file or folder; give a model name (dadepth, small, base, large), "
            "a hub id, a transformers folder, a .pth file or predictions:DIR."
        )
    try:
        est = _estimator(model.spec, input_size)
        reason = getattr(est, "unavailable_reason", lambda: None)()
    except MagicBokehError:
        raise
    except Exception as exc:  # e.g. a malformed hub id
        raise MagicBokehError(f"--model {model.spec}: not a usable depth model ({type(exc).__name__}: {exc})") from None
    if reason:
        raise MagicBokehError(f"--model {model.spec}: {reason}")


def _warn_shared_predictions(models: Sequence[ModelSpec], conditions: Sequence[str]) -> None:
    """Say when a predictions folder has no per-condition subfolders (same maps for both columns)."""
    if len(conditions) < 2:
        return
    for model in models:
        if model.predictions is not None and not all((Path(model.predictions) / c).is_dir() for c in conditions):
            logger.warning(
                "%s: no %s/clear and %s/degrade subfolders; the same predictions are scored for both conditions",
                model.label, model.predictions, model.predictions,
            )


def _read_prediction(model: ModelSpec, condition: str, name: str) -> np.ndarray:
    """``DIR/CONDITION/NAME.npy|png``, else ``DIR/NAME.npy|png``, as (h, w) float32."""
    from ..images import load_map

    folder = Path(model.predictions or "")
    for base in (folder / condition, folder):
        for suffix in PREDICTION_SUFFIXES:
            path = base / f"{name}{suffix}"
            if path.is_file():
                return load_map(path, what="prediction")
    raise MagicBokehError(f"{model.label}: no prediction {folder}/[{condition}/]{name}.npy|png")


def _degrade(rgb: np.ndarray, seed: int) -> np.ndarray:
    """The "degrade" condition's input: same size float32 [0, 1], deterministic for a seed."""
    from ..degradation import degrade

    out = np.asarray(degrade(rgb, preset=DEGRADE_PRESET, scale=DEGRADE_SCALE, seed=seed), np.float32)
    if out.shape != rgb.shape:
        raise MagicBokehError(f"degrade returned {out.shape} for a {rgb.shape} input; expected the same size.")
    return out


def _to_gt_size(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A prediction resized bilinearly to the ground truth's (H, W) when it differs."""
    pred = np.asarray(pred, np.float32)
    if pred.shape == shape:
        return pred
    import cv2

    return cv2.resize(pred, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------------ worker


def evaluate_sample(item: tuple[Job, Sample]) -> SampleResult:
    """Score every model on one frame under every condition (the unit of work for map_indexed)."""
    job, sample = item
    result = SampleResult(sample.name)
    try:
        rgb, gt = load_sample(job.info, sample)
    except MagicBokehError as exc:
        result.skip, result.message = SKIP_MISSING, str(exc)
        return result
    mask = valid_mask(gt, job.info.protocol)
    if not mask.any():
        result.skip = SKIP_NO_GT
        result.message = (
            f"{sample.name}: no valid ground-truth pixel in the crop and "
            f"{job.info.protocol.min_depth:g}-{job.info.protocol.max_depth:g} m"
        )
        return result
    inputs: dict[str, np.ndarray] = {"clear": rgb}
    needs_degraded = "degrade" in job.conditions and (
        job.save_degraded or any(m.predictions is None for m in job.models)
    )
    if needs_degraded:
        inputs["degrade"] = _degrade(rgb, job.seed + sample.index)
        if job.save_degraded:
            from ..images import save_png

            save_png(Path(job.save_degraded) / job.info.name / f"{sample.name}.png", inputs["degrade"])
    for model in job.models:
        scores: dict[str, dict[str, float]] = {}
        for condition in job.conditions:
            if model.predictions is not None:
                try:
                    pred = _read_prediction(model, condition, sample.name)
                    scores[condition] = evaluate_disparity(_to_gt_size(pred, gt.shape), gt, job.info.protocol, mask)
                except MagicBokehError as exc:
                    result.model_skips[model.label] = f"{sample.name}: {exc}"
                    break
            else:
                pred = _estimator(model.spec, job.input_size, job.torch_threads)(inputs[condition])
                scores[condition] = evaluate_disparity(_to_gt_size(pred, gt.shape), gt, job.info.protocol, mask)
        else:
            result.scores[model.label] = scores
    return result


# -------------------------------------------------------------------------------- aggregation


@dataclass
class DatasetReport:
    """A dataset's outcome: per-model mean metrics per condition, and what was counted."""

    name: str
    conditions: tuple[str, ...]
    models: tuple[ModelSpec, ...]
    means: dict[str, dict[str, dict[str, float]]]  # label -> condition -> metric -> value
    evaluated: int
    skipped: Counter[str]
    model_evaluated: dict[str, int]
    model_skipped: dict[str, int]

    def row(self, label: str) -> list[float | None]:
        """The table row's numbers, in :meth:`columns` order (None = nothing scored)."""
        out: list[float | None] = []
        means = self.means.get(label)
        for condition, metric in self.columns():
            if means is None:
                out.append(None)
            elif condition == "average":
                out.append(float(np.mean([means[c][metric] for c in self.conditions])))
            else:
                out.append(means[condition][metric])
        return out

    def columns(self) -> list[tuple[str, str]]:
        """(condition, metric) per column: AbsRel and δ1 per condition (Degrade first), Average when
        both conditions ran, then δ2, δ3 and RMSE per condition."""
        conds = [c for c in CONDITIONS if c in self.conditions]
        cols = [(c, m) for c in conds for m in ("abs_rel", "delta1")]
        if len(conds) == 2:
            cols += [("average", "abs_rel"), ("average", "delta1")]
        cols += [(c, m) for c in conds for m in ("delta2", "delta3", "rmse")]
        return cols


def aggregate(dataset: Dataset, job: Job, results: Sequence[SampleResult]) -> DatasetReport:
    """Per-model means over the frames each model scored, and the skip counts."""
    skipped: Counter[str] = Counter(reason for _, _, reason in dataset.skipped)
    for r in results:
        if r.skip:
            logger.warning("%s: %s skipped: %s", dataset.info.name, r.name, r.message)
            skipped[r.skip] += 1
    ok = [r for r in results if not r.skip]
    means: dict[str, dict[str, dict[str, float]]] = {}
    model_evaluated: dict[str, int] = {}
    model_skipped: dict[str, int] = {}
    for model in job.models:
        scored = [r.scores[model.label] for r in ok if model.label in r.scores]
        model_evaluated[model.label] = len(scored)
        model_skipped[model.label] = len(ok) - len(scored)
        for r in ok:
            if model.label in r.model_skips:
                logger.warning("%s: %s", dataset.info.name, r.model_skips[model.label])
        if scored:
            means[model.label] = {c: mean_metrics([s[c] for s in scored]) for c in job.conditions}
    return DatasetReport(
        dataset.info.name, job.conditions, job.models, means, len(ok), skipped, model_evaluated, model_skipped
    )


def format_report(report: DatasetReport) -> str:
    """The dataset's Markdown section: ``## NAME``, the table (3 decimals), the image counts."""
    titles = [
        f"{'Average' if c == 'average' else CONDITION_TITLES[c]} {METRIC_TITLES[m]}" for c, m in report.columns()
    ]
    lines = [f"## {report.name}", "", "| Model | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for model in report.models:
        cells = ["n/a" if v is None else f"{v:.3f}" for v in report.row(model.label)]
        lines.append(f"| {model.label} | " + " | ".join(cells) + " |")
    total_skipped = sum(report.skipped.values())
    detail = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items()))
    counts = f"Images: {report.evaluated} evaluated, {total_skipped} skipped"
    lines += ["", counts + (f" ({detail})." if detail else ".")]
    for model in report.models:
        if report.model_skipped[model.label]:
            lines.append(
                f"{model.label}: {report.model_evaluated[model.label]} evaluated, "
                f"{report.model_skipped[model.label]} skipped ({SKIP_NO_PREDICTION})."
            )
    return "\n".join(lines) + "\n"


def evaluate_dataset(
    dataset: Dataset, job: Job, *, workers: int = 1, ray_address: str | None = None, progress: bool = True
) -> DatasetReport:
    """Score every model on every frame of a listed dataset, sharded by frame index."""
    from ..parallel import map_indexed

    items = [(job, sample) for sample in dataset.samples]
    results = map_indexed(
        evaluate_sample, items, workers=workers, ray_address=ray_address, desc=f"depth {dataset.info.name}",
        progress=progress,
    )
    return aggregate(dataset, job, results)


# ----------------------------------------------------------------------------------------- CLI


def _conditions(text: str) -> tuple[str, ...]:
    names = [c.strip().lower() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in CONDITIONS]
    if bad or not names:
        raise MagicBokehError(f"--conditions takes clear, degrade or clear,degrade; got {text!r}.")
    return tuple(c for c in CONDITIONS if c in names)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m magicbokeh.eval.depth",
        description="Depth evaluation (supplement Table 1): AbsRel and δ1 (plus δ2, δ3, RMSE) after a "
        "least-squares scale-and-shift alignment in disparity space, on clear and degraded inputs.",
    )
    p.add_argument("--data", action="append", required=True, metavar="SPEC",
                   help="nyu:PATH (nyu_depth_v2_labeled.mat + splits.mat) | kitti:PATH (raw + "
                   "data_depth_annotated + eigen_test_files.txt) | real (photos with measured depth that "
                   "installed packages ship: the Middlebury 2014 motorcycle of scikit-image) | DIR (DIR/rgb/NAME.png|jpg + "
                   "DIR/depth/NAME.npy (m) or .png (16-bit mm)); repeat for several datasets")
    p.add_argument("--model", action="append", default=[], metavar="M",
                   help="depth model: dadepth | small | base | large | a hub id | a transformers folder | a .pth | "
                   "predictions:DIR (precomputed disparity DIR/NAME.npy|png, or DIR/clear/ and DIR/degrade/); repeat")
    p.add_argument("--conditions", type=str, default="clear,degrade",
                   help="clear, degrade or clear,degrade (default); the table lists Degrade first")
    p.add_argument("-o", "--output", metavar="FILE", help="also write the Markdown tables here")
    p.add_argument("--workers", type=int, default=1, help="local processes (default 1; each loads the models once)")
    p.add_argument("--ray", metavar="ADDRESS", help="run frames as Ray tasks: auto | local | ray://HOST:PORT")
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE,
                   help=f"depth model input side in px, a multiple of 14 (default {DEFAULT_INPUT_SIZE})")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N entries of each dataset (smoke runs)")
    p.add_argument("--split-file", metavar="FILE",
                   help="KITTI Eigen test list (default PATH/eigen_test_files.txt)")
    p.add_argument("--min-depth", type=float, metavar="M",
                   help="generic folder only: smallest valid depth in metres (default 1e-3)")
    p.add_argument("--max-depth", type=float, metavar="M",
                   help="generic folder only: largest valid depth in metres (default 80)")
    p.add_argument("--seed", type=int, default=DEGRADE_BASE_SEED,
                   help=f"degradation base seed; frame i uses seed + i (default {DEGRADE_BASE_SEED})")
    p.add_argument("--save-degraded", metavar="DIR",
                   help="write the degraded inputs to DIR/DATASET/NAME.png (8-bit) for external models; "
                   "without --model only these are written")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors, no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables and write ``--output``; raises MagicBokehError for bad input."""
    conditions = _conditions(args.conditions)
    if args.input_size < 14 or args.input_size % 14:
        raise MagicBokehError(f"--input-size must be a positive multiple of 14 (e.g. 518); got {args.input_size}.")
    if not args.model and not args.save_degraded:
        raise MagicBokehError("give at least one --model (or --save-degraded DIR to only export degraded inputs).")
    if args.save_degraded and "degrade" not in conditions:
        raise MagicBokehError("--save-degraded needs the degrade condition in --conditions.")
    datasets = [
        open_dataset(spec, split_file=args.split_file, min_depth=args.min_depth, max_depth=args.max_depth)
        .limit(args.limit)
        for spec in args.data
    ]
    ranged = [d.info.name for d in datasets if d.info.kind != "folder"]
    if ranged and (args.min_depth is not None or args.max_depth is not None):
        logger.warning("--min-depth/--max-depth apply to generic folders only; %s keep their standard range",
                       ", ".join(ranged))
    models = parse_models(args.model)
    for model in models:
        _check_model(model, args.input_size)
    _warn_shared_predictions(models, conditions)
    sections = []
    for dataset in datasets:
        if not dataset.samples:
            raise MagicBokehError(f"{dataset.info.name}: no frame to evaluate ({len(dataset.skipped)} skipped).")
        threads = max(1, (os.cpu_count() or 1) // args.workers) if args.workers > 1 and not args.ray else None
        job = Job(dataset.info, models, conditions, args.input_size, args.seed, args.save_degraded, threads)
        report = evaluate_dataset(dataset, job, workers=args.workers, ray_address=args.ray, progress=not args.quiet)
        if not models:
            logger.info("wrote %d degraded inputs to %s", report.evaluated,
                        Path(args.save_degraded) / dataset.info.name)
            continue
        if report.evaluated == 0:
            raise MagicBokehError(
                f"{dataset.info.name}: every frame was skipped ("
                + ", ".join(f"{n} {r}" for r, n in report.skipped.items()) + "); see the warnings above."
            )
        blank = [label for label, n in report.model_evaluated.items() if n == 0]
        if blank:  # a column of blanks with exit 0 would read as a result
            raise MagicBokehError(
                f"{dataset.info.name}: {', '.join(blank)} scored no frame ({SKIP_NO_PREDICTION} for all "
                f"{report.evaluated}); see the warnings above."
            )
        sections.append(format_report(report))
    if not sections:
        return 0
    text = "\n".join(sections)
    print(text, end="")
    if args.output:
        out = Path(args.output).expanduser()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            publish_text(out, text)
        except OSError as exc:
            raise MagicBokehError(f"cannot write {out}: {exc}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; bad input prints one line on stderr and returns 2."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    return run_command(lambda: run(args), verbose=args.verbose)


if __name__ == "__main__":
    # Run the importable module's main, so worker processes and Ray pickle
    # magicbokeh.eval.depth.evaluate_sample rather than __main__.evaluate_sample.
    from magicbokeh.eval.depth import main

    sys.exit(main())
