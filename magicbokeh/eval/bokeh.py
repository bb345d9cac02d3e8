"""Bokeh evaluation (EBB400-LQ style): render each input with its disparity and focus, score vs GT.

Layouts (files matched by stem ``ID``):

* Synthetic (``magicbokeh.data.layout``, written by ``magicbokeh.data.synth``): ``DIR/aif/ID.png`` (all-in-focus), ``DIR/lq/ID.png``
  (degraded), ``DIR/disparity/ID.npy`` (float32, 1 = near; an 8/16-bit PNG also works),
  ``DIR/bokeh/ID.png`` (ground truth), ``DIR/meta/ID.json`` with ``K`` (blur strength, [0, 32]) and
  ``focus_disparity`` (in the map's units). The backend sees ``lq/`` (``--input lq``, the default:
  MagicBokeh restores and blurs) or ``aif/`` (``--input aif``, for renderers that do not restore).
  K comes from each meta file; ``--K`` is ignored here.
* EBB-style: ``DIR/input/NAME.png``, ``DIR/disparity/NAME.{npy,png}``, ``DIR/gt/NAME.png`` and
  optional ``DIR/mask/NAME.png`` focus masks (non-zero = subject; focus = the median disparity under
  it). Without a mask the focus is automatic (nearest large region). K is ``--K`` (default 32).

Every map is min–max normalised to [0, 1] by the pipeline; ``focus_disparity`` is moved the same way.
An input smaller than its ground truth is upsampled (bicubic) to the GT size before the backend.

Example::

    python -m magicbokeh.eval.bokeh --data /data/synth-val --backend classical --input aif \\
        --backend BokehMe=predictions:/results/bokehme -o bokeh.md
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

from ..data import layout
from ..errors import MagicBokehError
from ..images import IMAGE_SUFFIXES
from ..settings import K_RANGE
from .common import Convention, Sample, add_common_arguments, find_image, parse_metrics, run_cli, score_samples

logger = logging.getLogger(__name__)

#: EBB400-LQ columns of the paper (FID over the whole set).
DEFAULT_METRICS = "psnr,ssim,lpips,dists,musiq,maniqa,fid"
DEFAULT_K = 32.0
MAP_SUFFIXES = (".npy", *IMAGE_SUFFIXES)

Found = tuple[list[Sample], list[tuple[str, str]]]


def _stems(folder: Path, suffixes: Sequence[str]) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes}


def _find_map(folder: Path, stem: str) -> Path | None:
    for suffix in MAP_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _read_meta(path: Path) -> tuple[float, float]:
    """(K, focus_disparity) from a synthetic meta file; raises with the reason."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MagicBokehError(f"unreadable meta file {path.name}: {exc}") from None
    try:
        k, focus = layout.blur_condition(meta)
    except KeyError as exc:
        raise MagicBokehError(f"meta file {path.name} has no {exc.args[0]!r} key") from None
    except (TypeError, ValueError):
        raise MagicBokehError(
            f"meta file {path.name}: {layout.META_K} and {layout.META_FOCUS} must be numbers") from None
    if not (math.isfinite(k) and K_RANGE[0] <= k <= K_RANGE[1]) or not math.isfinite(focus):
        raise MagicBokehError(f"meta file {path.name}: K={k:g} is outside [0, 32] or focus is not finite")
    return k, focus


def synthetic_samples(root: Path, input_kind: str) -> Found:
    """Samples of the synthetic layout; ``input_kind`` is ``"lq"`` or ``"aif"``."""
    ids = sorted(_stems(root / layout.BOKEH, IMAGE_SUFFIXES) | _stems(root / layout.META, (layout.META_SUFFIX,))
                 | _stems(root / input_kind, IMAGE_SUFFIXES))
    samples: list[Sample] = []
    incomplete: list[tuple[str, str]] = []
    for i in ids:
        inp = find_image(root / input_kind, (i,))
        gt = find_image(root / layout.BOKEH, (i,))
        disparity = _find_map(root / layout.DISPARITY, i)
        meta = layout.file_path(root, layout.META, i)
        lacking = [layout.relative_path(kind, i) for kind, p in ((input_kind, inp), (layout.BOKEH, gt),
                                                                 (layout.DISPARITY, disparity)) if p is None]
        if not meta.is_file():
            lacking.append(layout.relative_path(layout.META, i))
        if lacking:
            incomplete.append((i, "missing " + ", ".join(lacking)))
            continue
        try:
            k, focus = _read_meta(meta)
        except MagicBokehError as exc:
            incomplete.append((i, str(exc)))
            continue
        samples.append(Sample(name=i, gt_path=str(gt), input_path=str(inp), disparity_path=str(disparity),
                              focus_disparity=focus, k=k))
    return samples, incomplete


def ebb_samples(root: Path, k: float) -> Found:
    """Samples of the EBB-style layout (input/, disparity/, gt/, optional mask/) at blur strength ``k``."""
    ids = sorted(_stems(root / "input", IMAGE_SUFFIXES) | _stems(root / "gt", IMAGE_SUFFIXES))
    has_masks = (root / "mask").is_dir()
    samples: list[Sample] = []
    incomplete: list[tuple[str, str]] = []
    for i in ids:
        inp = find_image(root / "input", (i,))
        gt = find_image(root / "gt", (i,))
        disparity = _find_map(root / "disparity", i)
        lacking = [what for what, p in ((f"input/{i}.png", inp), (f"gt/{i}.png", gt),
                                        (f"disparity/{i}.npy|png", disparity)) if p is None]
        if lacking:
            incomplete.append((i, "missing " + ", ".join(lacking)))
            continue
        mask = find_image(root / "mask", (i,)) if has_masks else None
        if has_masks and mask is None:
            logger.warning("%s: no mask/%s.png; using automatic focus", i, i)
        samples.append(Sample(name=i, gt_path=str(gt), input_path=str(inp), disparity_path=str(disparity),
                              mask_path=str(mask) if mask else None, k=k))
    return samples, incomplete


def collect_samples(args: argparse.Namespace) -> tuple[Found, str, list[str]]:
    """Samples of ``--data``, the default heading, and notes describing input, K and focus."""
    root = Path(args.data).expanduser()
    if not root.is_dir():
        raise MagicBokehError(f"--data folder {str(root)!r} does not exist.")
    if layout.is_synthetic_layout(root):
        if args.K is not None:
            logger.warning("--K is ignored for the synthetic layout: each meta/ID.json gives K.")
        notes = [f"Synthetic layout: backend input {args.input}/, ground truth bokeh/, K and focus "
                 "disparity from meta/ID.json."]
        return synthetic_samples(root, args.input), f"Bokeh: {root.name}", notes
    if (root / "input").is_dir() and (root / "gt").is_dir():
        k = DEFAULT_K if args.K is None else float(args.K)
        if not (math.isfinite(k) and K_RANGE[0] <= k <= K_RANGE[1]):
            raise MagicBokehError(f"--K {k:g} is outside [0, 32].")
        if args.input == "aif":
            logger.info("EBB-style layout: the backend input is input/ (--input applies to the synthetic layout).")
        focus = "focus from mask/NAME.png" if (root / "mask").is_dir() else "automatic focus (no mask/ folder)"
        notes = [f"EBB-style layout: backend input input/, ground truth gt/, K = {k:g}, {focus}."]
        return ebb_samples(root, k), root.name, notes
    raise MagicBokehError(
        f"{root} is neither the synthetic layout (aif/, lq/, disparity/, bokeh/, meta/) nor the "
        "EBB-style layout (input/, disparity/, gt/, optional mask/)."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m magicbokeh.eval.bokeh",
        description="Bokeh evaluation: render inputs with their disparity and focus and score them "
        "against the ground-truth bokeh (PSNR/SSIM by default on RGB, no border crop).",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="synthetic or EBB-style folder")
    parser.add_argument("--input", choices=("lq", "aif"), default="lq",
                        help="synthetic layout: render lq/ (restore and blur, default) or aif/")
    parser.add_argument("--K", type=float, default=None,
                        help=f"EBB-style layout: blur strength in [0, 32] (default {DEFAULT_K:g})")
    add_common_arguments(parser, default_metrics=DEFAULT_METRICS)
    return parser


def run(args: argparse.Namespace) -> str:
    """Evaluate and return the Markdown section."""
    parse_metrics(args.metrics)  # reject a bad --metrics before reading the data
    (samples, incomplete), dataset, notes = collect_samples(args)
    convention = Convention(
        y_channel=False if args.y_channel is None else args.y_channel,
        crop_border=0 if args.crop_border is None else args.crop_border,
    )
    return score_samples(args, samples, incomplete, dataset, convention, notes,
                         empty=f"no complete samples in {args.data} ({len(incomplete)} incomplete).")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad input)."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
