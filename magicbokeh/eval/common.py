"""Shared machinery of ``eval.sr`` and ``eval.bokeh``: samples, per-image scoring, Markdown tables.

One :class:`Sample` is one evaluation image: the input the backend sees, the ground truth, and how
to render (disparity, focus, K). :func:`score_item` renders or reads one sample for one backend and
scores it; :func:`evaluate` shards the samples over processes or Ray with
:func:`magicbokeh.parallel.map_indexed` and averages. :func:`format_table` writes the paper's layout.

Backends are registered renderer names (``classical``, ``magicbokeh``, ...) or
``predictions:DIR`` (``LABEL=predictions:DIR`` to name the row), which scores precomputed results
named after the samples' stems.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..entrypoint import configure_logging, run_command
from ..errors import MagicBokehError
from ..images import IMAGE_SUFFIXES, load_map, load_photo, resize_map, save_png, to_uint8
from . import image_metrics

logger = logging.getLogger(__name__)

PREDICTIONS_PREFIX = "predictions:"
PYIQA_HINT = "pip install pyiqa"
NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class MetricSpec:
    """One table column: header word, arrow, decimals, and how it is computed.

    ``kind``: ``"builtin"`` (this project), ``"fr"`` (pyiqa full-reference, per image), ``"nr"``
    (pyiqa no-reference, per image) or ``"set"`` (pyiqa over the whole output and reference sets).
    """

    header: str
    arrow: str
    decimals: int
    kind: str
    pyiqa_name: str | None = None


#: Every metric the tools know, in the column order of the paper's tables.
METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec("PSNR", "↑", 2, "builtin"),
    "ssim": MetricSpec("SSIM", "↑", 4, "builtin"),
    "lpips": MetricSpec("LPIPS", "↓", 4, "fr", "lpips"),
    "dists": MetricSpec("DISTS", "↓", 4, "fr", "dists"),
    "clipiqa": MetricSpec("CLIP-IQA", "↑", 4, "nr", "clipiqa"),
    "niqe": MetricSpec("NIQE", "↓", 4, "nr", "niqe"),
    "musiq": MetricSpec("MUSIQ", "↑", 2, "nr", "musiq"),
    "maniqa": MetricSpec("MANIQA", "↑", 4, "nr", "maniqa"),
    "fid": MetricSpec("FID", "↓", 2, "set", "fid"),
}


def parse_metrics(spec: str) -> tuple[str, ...]:
    """``"psnr,ssim,lpips"`` → known metric keys in table order; unknown names raise."""
    names = [n.strip().lower().replace("-", "") for n in spec.split(",") if n.strip()]
    if not names:
        raise MagicBokehError(f"--metrics is empty; choose from {', '.join(METRICS)}.")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MagicBokehError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
    return tuple(k for k in METRICS if k in names)


def pyiqa_available() -> bool:
    """True when the optional ``pyiqa`` package is importable (checked without importing it)."""
    return importlib.util.find_spec("pyiqa") is not None


@dataclass(frozen=True)
class Sample:
    """One evaluation image.

    Attributes:
        name: the stem used in the table notes and to find ``predictions:DIR`` files.
        gt_path: ground truth image.
        input_path: what the backend renders (None when only predictions are scored).
        aliases: further stems a prediction file may carry (e.g. the LQ file's stem).
        disparity_path: disparity map (``.npy`` or 8/16-bit image, 1 = near); None = an all-zero
            map (Real-ISR at K = 0).
        focus_disparity: focal plane in the stored map's units (min–max normalised like the map
            before use); None = from ``mask_path``, else automatic.
        mask_path: focus mask (non-zero = subject), resized to the input with nearest neighbour.
        k: blur strength K in [0, 32].
    """

    name: str
    gt_path: str
    input_path: str | None = None
    aliases: tuple[str, ...] = ()
    disparity_path: str | None = None
    focus_disparity: float | None = None
    mask_path: str | None = None
    k: float = 0.0


@dataclass(frozen=True)
class Convention:
    """How PSNR/SSIM are computed: BT.601 Y or RGB, and the border crop in pixels."""

    y_channel: bool
    crop_border: int

    def describe(self) -> str:
        space = "BT.601 Y channel" if self.y_channel else "RGB (3 channels, SSIM averaged over channels)"
        crop = f"{self.crop_border}-pixel border cropped" if self.crop_border else "no border crop"
        return (
            f"PSNR/SSIM on {space} of 8-bit images, data range 255, {crop}; SSIM: Gaussian window 11, "
            "σ 1.5, K1 0.01, K2 0.03 (Wang et al. 2004)."
        )


@dataclass(frozen=True)
class Job:
    """What every worker needs besides the sample: backend, metrics, convention."""

    backend: str
    metrics: tuple[str, ...]
    convention: Convention
    optional_ok: tuple[str, ...] = ()
    set_dir: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ImageScore:
    """One sample's result for one backend: scores, render seconds, or why it was skipped."""

    name: str
    scores: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    skipped: str | None = None


@dataclass
class BackendRow:
    """One table row: the label, the per-metric means, the median time and the per-image results."""

    label: str
    backend: str
    means: dict[str, float | str]
    median_seconds: float | None
    images: list[ImageScore]

    @property
    def evaluated(self) -> int:
        return sum(1 for s in self.images if s.skipped is None)

    @property
    def skipped(self) -> list[ImageScore]:
        return [s for s in self.images if s.skipped is not None]


# --------------------------------------------------------------------------------------------
# Backends


def split_backend(spec: str) -> tuple[str, str]:
    """``(label, backend)`` from ``NAME``, ``predictions:DIR`` or ``LABEL=predictions:DIR``."""
    label, sep, rest = spec.partition("=")
    if sep and rest.startswith(PREDICTIONS_PREFIX) and label:
        return label, rest
    if spec.startswith(PREDICTIONS_PREFIX):
        folder = Path(spec[len(PREDICTIONS_PREFIX):])
        return f"{folder.name or folder} (predictions)", spec
    return spec, spec


def predictions_dir(backend: str) -> Path | None:
    """The folder of a ``predictions:DIR`` backend, else None."""
    if backend.startswith(PREDICTIONS_PREFIX):
        return Path(backend[len(PREDICTIONS_PREFIX):]).expanduser()
    return None


def backend_options(backend: str, restored_depth: str | None = None) -> dict[str, Any]:
    """Options for one backend's renders: the two-stage backend's ``restored_depth`` when given."""
    if restored_depth and backend == "two-stage":
        from ..two_stage import RESTORED_DEPTH

        return {RESTORED_DEPTH: restored_depth}
    return {}


def check_backend(backend: str, options: Mapping[str, Any] | None = None) -> None:
    """Fail before any work when a backend cannot run here (unknown, no weights, no folder)."""
    folder = predictions_dir(backend)
    if folder is not None:
        if not folder.is_dir():
            raise MagicBokehError(f"predictions folder {str(folder)!r} does not exist.")
        return
    from ..backends import get_backend
    from ..pipeline import RenderSettings

    settings = RenderSettings(backend=backend, backend_options=dict(options or {}))
    status = get_backend(backend).availability(settings.backend_call_options())
    if not status.ok:
        raise MagicBokehError(f"backend {backend!r} cannot run here: {status.reason}")


def find_image(folder: Path, stems: Sequence[str]) -> Path | None:
    """The first ``folder/STEM.<image suffix>`` that exists for the given stems, else None."""
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def list_images(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the image files directly in ``folder`` (sorted by name)."""
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }


# --------------------------------------------------------------------------------------------
# Per-image work (runs in worker processes: module-level and picklable)

_PYIQA_METRICS: dict[str, Any] = {}


def _device() -> Any:
    """The torch device of the pyiqa metrics: CUDA when available, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pyiqa_metric(key: str) -> Any:
    """The process-wide pyiqa metric for ``key`` (created once per process)."""
    if key not in _PYIQA_METRICS:
        import pyiqa

        _PYIQA_METRICS[key] = pyiqa.create_metric(METRICS[key].pyiqa_name, device=_device())
    return _PYIQA_METRICS[key]


def _to_tensor(image8: np.ndarray) -> Any:
    """uint8 ``(H, W, 3)`` → float ``(1, 3, H, W)`` tensor in [0, 1] on the metrics' device."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(image8, dtype=np.float32) / 255.0)
    return t.permute(2, 0, 1)[None].to(_device())


def probe_optional_metrics(metrics: Sequence[str]) -> dict[str, str]:
    """``{metric: reason}`` for requested pyiqa metrics that cannot be used here.

    Absent pyiqa → every optional metric reads ``"not installed"``. With pyiqa, each metric is
    created once (pyiqa fetches its weights then); one that fails reads ``"unavailable"``.
    """
    optional = [m for m in metrics if METRICS[m].kind != "builtin"]
    if not optional:
        return {}
    if not pyiqa_available():
        return {m: NOT_INSTALLED for m in optional}
    reasons: dict[str, str] = {}
    for m in optional:
        try:
            _pyiqa_metric(m)
        except Exception as exc:  # network, weights, version: one column fails, not the run
            logger.warning("pyiqa metric %s is unavailable: %s", m, exc)
            reasons[m] = "unavailable"
    return reasons


def _load_input(sample: Sample, gt_size: tuple[int, int]) -> np.ndarray:
    """The backend input as float RGB at the ground truth's size (bicubic upsampling if smaller)."""
    import cv2

    assert sample.input_path is not None
    rgb = load_photo(sample.input_path).rgb
    gw, gh = gt_size
    h, w = rgb.shape[:2]
    if (w, h) == (gw, gh):
        return rgb
    if w > gw or h > gh:
        raise MagicBokehError(f"input is {w}x{h}, larger than the ground truth {gw}x{gh}")
    up = cv2.resize(rgb, (gw, gh), interpolation=cv2.INTER_CUBIC)
    return np.clip(up, 0.0, 1.0).astype(np.float32)


def _render(sample: Sample, backend: str, gt_size: tuple[int, int],
            options: Mapping[str, Any] | None = None) -> tuple[np.ndarray, float]:
    """(uint8 output, seconds of the render call) of one sample through ``pipeline.render``."""
    from ..pipeline import Focus, RenderSettings, render

    rgb = _load_input(sample, gt_size)
    h, w = rgb.shape[:2]
    if sample.disparity_path is None:
        disparity: Any = np.zeros((h, w), np.float32)
        focus = Focus.disparity(0.0)
    else:
        disparity = load_map(sample.disparity_path, what="disparity map")
        if sample.focus_disparity is not None:
            # The pipeline min-max normalises the map; move the focal plane the same way.
            lo, hi = float(disparity.min()), float(disparity.max())
            f = (float(sample.focus_disparity) - lo) / (hi - lo + 1e-8)
            focus = Focus.disparity(min(max(f, 0.0), 1.0))
        elif sample.mask_path is not None:
            mask = load_map(sample.mask_path, what="focus mask")
            focus = Focus.mask(resize_map(mask, w, h))
        else:
            focus = Focus.auto()
    t0 = time.perf_counter()
    settings = RenderSettings(k=sample.k, backend=backend, backend_options=dict(options or {}))
    result = render(rgb, depth=disparity, focus=focus, settings=settings)
    seconds = time.perf_counter() - t0
    return to_uint8(result.image), seconds


def score_item(item: tuple[Job, Sample]) -> ImageScore:
    """Render (or read the prediction of) one sample and score it against its ground truth.

    Bad or missing files and size mismatches come back as ``ImageScore.skipped`` with the reason.
    """
    job, sample = item
    try:
        gt = to_uint8(load_photo(sample.gt_path).rgb)
        gt_size = (gt.shape[1], gt.shape[0])
        folder = predictions_dir(job.backend)
        seconds: float | None = None
        if folder is not None:
            path = find_image(folder, (sample.name, *sample.aliases))
            if path is None:
                return ImageScore(sample.name, skipped=f"no prediction {sample.name}.* in {folder}")
            out = to_uint8(load_photo(path).rgb)
        else:
            if sample.input_path is None:
                return ImageScore(sample.name, skipped="no input image")
            out, seconds = _render(sample, job.backend, gt_size, job.options)
        if out.shape != gt.shape:
            return ImageScore(
                sample.name,
                skipped=f"size mismatch: output {out.shape[1]}x{out.shape[0]}, ground truth {gt_size[0]}x{gt_size[1]}",
            )
        scores = _score_pair(job, out, gt)
        if job.set_dir is not None:
            save_png(Path(job.set_dir) / "output" / f"{sample.name}.png", out.astype(np.float32) / 255.0)
            save_png(Path(job.set_dir) / "reference" / f"{sample.name}.png", gt.astype(np.float32) / 255.0)
        return ImageScore(sample.name, scores=scores, seconds=seconds)
    except MagicBokehError as exc:
        return ImageScore(sample.name, skipped=str(exc).rstrip("."))


def _score_pair(job: Job, out: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    conv = job.convention
    scores: dict[str, float] = {}
    for m in job.metrics:
        kind = METRICS[m].kind
        if m == "psnr":
            scores[m] = image_metrics.psnr(out, gt, crop_border=conv.crop_border, y_channel=conv.y_channel)
        elif m == "ssim":
            scores[m] = image_metrics.ssim(out, gt, crop_border=conv.crop_border, y_channel=conv.y_channel)
        elif m in job.optional_ok and kind in ("fr", "nr"):
            try:
                metric = _pyiqa_metric(m)
                args = (_to_tensor(out), _to_tensor(gt)) if kind == "fr" else (_to_tensor(out),)
                scores[m] = float(metric(*args).item())
            except Exception as exc:  # e.g. an image too small for the metric: leave this value out
                logger.warning("pyiqa %s failed on an image of %dx%d: %s", m, out.shape[1], out.shape[0], exc)
    return scores


# --------------------------------------------------------------------------------------------
# Driver


def evaluate(
    samples: Sequence[Sample],
    backends: Sequence[str],
    metrics: Sequence[str],
    convention: Convention,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    restored_depth: str | None = None,
) -> tuple[list[BackendRow], dict[str, str]]:
    """Score every backend on every sample; returns the rows and ``{metric: why it is missing}``.

    ``restored_depth``: a depth model with which the two-stage backend estimates depth again on the
    restored photo (its row's label names it); None = the input's depth.

    Each backend is one :func:`magicbokeh.parallel.map_indexed` pass over the samples, so results
    keep the sample order and do not depend on ``workers`` or Ray.
    """
    from ..parallel import map_indexed

    if not samples:
        raise MagicBokehError("no image pairs to evaluate.")
    labelled = [split_backend(b) for b in backends]
    if restored_depth and not any(backend == "two-stage" for _, backend in labelled):
        raise MagicBokehError("--restored-depth applies to the two-stage backend; add --backend two-stage.")
    options = {backend: backend_options(backend, restored_depth) for _, backend in labelled}
    for _, backend in labelled:
        check_backend(backend, options[backend])
    labelled = [(f"{label} (depth of the restored photo: {restored_depth})" if options[backend] else label, backend)
                for label, backend in labelled]
    missing = probe_optional_metrics(metrics)
    optional_ok = tuple(m for m in metrics if METRICS[m].kind != "builtin" and m not in missing)
    rows: list[BackendRow] = []
    for label, backend in labelled:
        with tempfile.TemporaryDirectory(prefix="magicbokeh-eval-") as tmp:
            set_dir = tmp if any(METRICS[m].kind == "set" for m in optional_ok) else None
            job = Job(backend, tuple(metrics), convention, optional_ok, set_dir, options[backend])
            results = map_indexed(
                score_item, [(job, s) for s in samples], workers=workers, ray_address=ray_address,
                desc=label, progress=progress,
            )
            for r in results:
                if r.skipped:
                    logger.warning("%s: skipped %s: %s", label, r.name, r.skipped)
            means = _aggregate(results, metrics, missing)
            if set_dir is not None and any(r.skipped is None for r in results):
                for m in optional_ok:
                    if METRICS[m].kind == "set":
                        means[m] = float(_pyiqa_metric(m)(str(Path(tmp) / "output"), str(Path(tmp) / "reference")))
        times = [r.seconds for r in results if r.skipped is None and r.seconds is not None]
        rows.append(BackendRow(label, backend, means, statistics.median(times) if times else None, results))
    return rows, missing


def _aggregate(results: Sequence[ImageScore], metrics: Sequence[str], missing: dict[str, str]) -> dict[str, float | str]:
    """Per-metric mean over the evaluated images (``inf`` PSNR stays ``inf``)."""
    done = [r for r in results if r.skipped is None]
    means: dict[str, float | str] = {}
    for m in metrics:
        if m in missing:
            means[m] = missing[m]
            continue
        values = [r.scores[m] for r in done if m in r.scores]
        means[m] = float(np.mean(values)) if values else "–"
    return means


def _cell(metric: str, value: float | str) -> str:
    if isinstance(value, str):
        return value
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{METRICS[metric].decimals}f}"


def format_table(
    dataset: str,
    rows: Sequence[BackendRow],
    metrics: Sequence[str],
    missing: dict[str, str],
    convention: Convention,
    *,
    total: int,
    incomplete: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
) -> str:
    """The Markdown section: ``## DATASET``, the table, then counts and the conventions.

    Args:
        dataset: heading text.
        rows: one per backend.
        metrics: metric keys, in column order.
        missing: ``{metric: cell text}`` for optional metrics that could not be computed.
        convention: the PSNR/SSIM convention used.
        total: complete samples found (each row says how many it evaluated).
        incomplete: ``(name, reason)`` for samples dropped before evaluation (missing files).
        notes: extra lines (dataset-specific).
    """
    headers = ["Method", *(f"{METRICS[m].header} {METRICS[m].arrow}" for m in metrics), "Time (s)"]
    lines = [f"## {dataset}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        time_cell = f"{row.median_seconds:.4f}" if row.median_seconds is not None else "n/a"
        cells = [row.label, *(_cell(m, row.means[m]) for m in metrics), time_cell]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Images: {total} complete, {len(incomplete)} incomplete (skipped).")
    for name, reason in incomplete:
        lines.append(f"- skipped {name}: {reason}")
    for row in rows:
        skipped = row.skipped
        lines.append(f"- {row.label}: {row.evaluated} evaluated, {len(skipped)} skipped")
        for s in skipped:
            lines.append(f"  - {s.name}: {s.skipped}")
    lines.append("")
    lines.append(convention.describe())
    lines.append("Time (s): median seconds per image of the render call (n/a for precomputed predictions).")
    not_installed = [METRICS[m].header for m in metrics if missing.get(m) == NOT_INSTALLED]
    if not_installed:
        lines.append(f"{', '.join(not_installed)}: not installed; install the metrics extra: {PYIQA_HINT}")
    unavailable = [METRICS[m].header for m in metrics if missing.get(m) == "unavailable"]
    if unavailable:
        lines.append(f"{', '.join(unavailable)}: pyiqa could not create the metric (see the log).")
    lines.extend(notes)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# CLI helpers


def add_common_arguments(parser: argparse.ArgumentParser, *, default_metrics: str) -> None:
    """Flags shared by both tools: backends, metrics, convention, sharding, output, verbosity."""
    parser.add_argument(
        "--backend", action="append", required=True, metavar="B",
        help="renderer name (classical, magicbokeh, ...) or predictions:DIR (LABEL=predictions:DIR "
        "to name the row) for precomputed results named after the stems; repeat for more rows",
    )
    parser.add_argument(
        "--metrics", default=default_metrics,
        help=f"comma-separated, from {','.join(METRICS)} (default {default_metrics}); all but psnr/ssim "
        f"need the optional metrics extra ({PYIQA_HINT})",
    )
    parser.add_argument("--crop-border", type=int, default=None, metavar="N",
                        help="pixels dropped from every side before PSNR/SSIM")
    channel = parser.add_mutually_exclusive_group()
    channel.add_argument("--y-channel", dest="y_channel", action="store_true", default=None,
                         help="PSNR/SSIM on BT.601 luma (SR convention)")
    channel.add_argument("--rgb", dest="y_channel", action="store_false",
                         help="PSNR/SSIM on the RGB channels")
    parser.add_argument("--restored-depth", default=None, metavar="MODEL",
                        help="two-stage backend: estimate depth again on the restored photo with MODEL "
                             "(auto, small, base, large, dadepth, a hub id, folder or .pth), as published "
                             "two-stage baselines do (default: the input's depth)")
    parser.add_argument("--workers", type=int, default=1, metavar="W", help="local worker processes (default 1)")
    parser.add_argument("--ray", default=None, metavar="ADDR",
                        help="shard over a Ray cluster: auto, local or ray://HOST:PORT")
    parser.add_argument("--name", default=None, help="dataset heading of the table")
    parser.add_argument("-o", "--output", default=None, metavar="TABLE.md",
                        help="also write the Markdown table to this file (overwritten)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, errors only")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")


def score_samples(args: argparse.Namespace, samples: list, incomplete: list, dataset: str,
                  convention: "Convention", notes: list[str], *, empty: str) -> str:
    """Warn about incomplete samples, evaluate every backend and return the Markdown section.

    ``empty``: the error message when no complete sample is left.
    """
    for name, reason in incomplete:
        logger.warning("skipped %s: %s", name, reason)
    if not samples:
        raise MagicBokehError(empty)
    metrics = parse_metrics(args.metrics)
    rows, missing = evaluate(
        samples, args.backend, metrics, convention, workers=args.workers, ray_address=args.ray,
        progress=not args.quiet, restored_depth=getattr(args, "restored_depth", None),
    )
    failed = [row for row in rows if row.evaluated == 0]
    if failed:
        # A table of blanks with exit 0 would read as a result; no image scored is an error.
        first = failed[0].images[0] if failed[0].images else None
        raise MagicBokehError(
            f"{', '.join(r.label for r in failed)}: none of the {len(samples)} image(s) could be evaluated"
            + (f" (e.g. {first.name}: {first.skipped})" if first and first.skipped else "") + "."
        )
    return format_table(args.name or dataset, rows, metrics, missing, convention,
                        total=len(samples), incomplete=incomplete, notes=notes)


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], str],
            argv: Sequence[str] | None) -> int:
    """Parse, run, print the table (and write ``-o``); bad input → one line on stderr, exit 2."""
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)

    def work() -> int:
        table = run(args)
        if args.output:
            from ..publish import publish_text

            out = Path(args.output)
            out.parent.mkdir(parents=True, exist_ok=True)
            publish_text(out, table)
        print(table, end="")
        return 0

    return run_command(work, verbose=args.verbose)
