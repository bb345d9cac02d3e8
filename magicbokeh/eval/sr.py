"""Real-ISR evaluation at K = 0 (supplement Table 2): restore each LQ photo, score against its HQ.

Every LQ photo goes through :func:`magicbokeh.pipeline.render` with an all-zero disparity map,
focus disparity 0 and K = 0, so the defocus map is zero everywhere and MagicBokeh only restores.
The ``classical`` backend returns its input unchanged at K = 0: its row is the identity baseline
(the bicubic-upsampled LQ when the LQ is smaller than the HQ).

Layouts (pairs by file stem):

* ``--lq DIR --hq DIR``: any two folders; ``DIR/NAME.png`` in one pairs with ``NAME.*`` in the other.
* ``--data realsr:PATH [--scale S]``: RealSR V3, ``PATH/{Canon,Nikon}/Test/S/NAME_LRS.png`` with
  ``NAME_HR.png`` beside it (any folder ``.../Test/S/`` under PATH is searched).
* ``--data drealsr:PATH [--scale S]``: DRealSR, ``PATH/Test_xS/test_LR/*.png`` and
  ``PATH/Test_xS/test_HR/*.png`` (or PATH itself holding ``test_LR``/``test_HR``); a trailing
  ``_x<N>`` on the stems (``DSC_0001_x4`` / ``DSC_0001_x1``) is ignored when pairing.

An LQ photo smaller than its HQ is upsampled with bicubic interpolation to the HQ size before the
backend (MagicBokeh keeps the input size); one larger than its HQ is named and skipped.

Example::

    python -m magicbokeh.eval.sr --data realsr:/data/RealSR_V3 --backend classical \\
        --backend OSEDiff=predictions:/results/osediff -o realsr.md
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Sequence

from ..errors import MagicBokehError
from ..images import IMAGE_SUFFIXES
from .common import Convention, Sample, add_common_arguments, list_images, parse_metrics, run_cli, score_samples

logger = logging.getLogger(__name__)

#: Supplement Table 2 columns.
DEFAULT_METRICS = "psnr,ssim,lpips,dists,clipiqa,niqe,musiq,maniqa,fid"
DEFAULT_SCALE = 4

Pairs = tuple[list[Sample], list[tuple[str, str]]]


def pair_folders(lq_dir: Path, hq_dir: Path, *, strip: str | None = None) -> Pairs:
    """Samples for the images of two folders paired by stem, and ``(name, reason)`` for the unpaired.

    Args:
        lq_dir, hq_dir: flat folders of images.
        strip: a regular expression removed from the end of both folders' stems before pairing.
    """
    for folder, what in ((lq_dir, "--lq"), (hq_dir, "--hq")):
        if not folder.is_dir():
            raise MagicBokehError(f"{what} folder {str(folder)!r} does not exist.")

    def keyed(folder: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for stem, path in list_images(folder).items():
            key = re.sub(strip + "$", "", stem) if strip else stem
            out[key] = path
        return out

    lq, hq = keyed(lq_dir), keyed(hq_dir)
    samples = [
        Sample(name=k, gt_path=str(hq[k]), input_path=str(lq[k]), aliases=(lq[k].stem,) if lq[k].stem != k else ())
        for k in sorted(lq.keys() & hq.keys())
    ]
    incomplete = [(k, f"no HQ image in {hq_dir}") for k in sorted(lq.keys() - hq.keys())]
    incomplete += [(k, f"no LQ image in {lq_dir}") for k in sorted(hq.keys() - lq.keys())]
    return samples, incomplete


def realsr_pairs(root: Path, scale: int) -> Pairs:
    """RealSR V3 pairs: ``.../Test/<scale>/NAME_LR<scale>.*`` with ``NAME_HR.*`` in the same folder."""
    if not root.is_dir():
        raise MagicBokehError(f"RealSR folder {str(root)!r} does not exist.")
    folders = sorted(
        p for p in root.rglob(str(scale)) if p.is_dir() and p.parent.name.lower() == "test"
    )
    if not folders:
        raise MagicBokehError(
            f"no RealSR test folders '<camera>/Test/{scale}/' under {root}; check the path and --scale."
        )
    samples: list[Sample] = []
    incomplete: list[tuple[str, str]] = []
    seen: set[str] = set()
    lr_tag, hr_tag = f"_LR{scale}", "_HR"
    for folder in folders:
        files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        lr = {s[: -len(lr_tag)]: p for s, p in files.items() if s.endswith(lr_tag)}
        hr = {s[: -len(hr_tag)]: p for s, p in files.items() if s.endswith(hr_tag)}
        for base in sorted(lr.keys() | hr.keys()):
            name = base if base not in seen else f"{folder.parent.parent.name}_{base}"
            seen.add(name)
            if base not in hr:
                incomplete.append((name, f"no {base}{hr_tag} image in {folder}"))
            elif base not in lr:
                incomplete.append((name, f"no {base}{lr_tag} image in {folder}"))
            else:
                samples.append(Sample(name=name, gt_path=str(hr[base]), input_path=str(lr[base]),
                                      aliases=(lr[base].stem,)))
    return samples, incomplete


def drealsr_pairs(root: Path, scale: int) -> Pairs:
    """DRealSR pairs: ``Test_x<scale>/test_LR`` and ``test_HR``, stems compared without ``_x<N>``."""
    base = root / f"Test_x{scale}" if (root / f"Test_x{scale}").is_dir() else root
    lq_dir, hq_dir = base / "test_LR", base / "test_HR"
    if not (lq_dir.is_dir() and hq_dir.is_dir()):
        raise MagicBokehError(
            f"no DRealSR folders under {root}: expected Test_x{scale}/test_LR and Test_x{scale}/test_HR "
            "(or test_LR and test_HR directly)."
        )
    return pair_folders(lq_dir, hq_dir, strip=r"_x\d+")


def collect_pairs(args: argparse.Namespace) -> tuple[Pairs, str]:
    """The samples from ``--data`` or ``--lq/--hq``, and the default dataset heading."""
    if args.data:
        kind, sep, path = args.data.partition(":")
        if not sep or kind.lower() not in ("realsr", "drealsr") or not path:
            raise MagicBokehError(f"--data takes realsr:PATH or drealsr:PATH; got {args.data!r}.")
        if args.lq or args.hq:
            raise MagicBokehError("give either --data or --lq/--hq, not both.")
        root = Path(path).expanduser()
        if kind.lower() == "realsr":
            return realsr_pairs(root, args.scale), f"RealSR (×{args.scale})"
        return drealsr_pairs(root, args.scale), f"DRealSR (×{args.scale})"
    if not (args.lq and args.hq):
        raise MagicBokehError("give --lq DIR and --hq DIR, or --data realsr:PATH / drealsr:PATH.")
    hq = Path(args.hq).expanduser()
    return pair_folders(Path(args.lq).expanduser(), hq), f"Real-ISR: {hq.name}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m magicbokeh.eval.sr",
        description="Real-ISR at K = 0 (all-zero defocus): restore LQ photos and score them against "
        "their HQ pairs (PSNR/SSIM by default on BT.601 Y with a border crop of --scale pixels).",
    )
    parser.add_argument("--lq", default=None, metavar="DIR", help="folder of low-quality inputs")
    parser.add_argument("--hq", default=None, metavar="DIR", help="folder of ground-truth images, same stems")
    parser.add_argument("--data", default=None, metavar="KIND:PATH",
                        help="realsr:PATH (RealSR V3) or drealsr:PATH (DRealSR) instead of --lq/--hq")
    parser.add_argument("--scale", type=int, default=DEFAULT_SCALE,
                        help=f"SR factor: picks the RealSR/DRealSR subset and the default border crop "
                        f"(default {DEFAULT_SCALE})")
    add_common_arguments(parser, default_metrics=DEFAULT_METRICS)
    return parser


def run(args: argparse.Namespace) -> str:
    """Evaluate and return the Markdown section."""
    if args.scale < 1:
        raise MagicBokehError(f"--scale must be a positive integer; got {args.scale}.")
    parse_metrics(args.metrics)  # reject a bad --metrics before reading the data
    (samples, incomplete), dataset = collect_pairs(args)
    convention = Convention(
        y_channel=True if args.y_channel is None else args.y_channel,
        crop_border=args.scale if args.crop_border is None else args.crop_border,
    )
    notes = [
        "Real-ISR at K = 0 (all-zero defocus map, focus disparity 0). LQ smaller than HQ is upsampled "
        "(bicubic) to the HQ size before the backend; classical at K = 0 returns that input unchanged "
        "(identity baseline).",
    ]
    return score_samples(args, samples, incomplete, dataset, convention, notes,
                         empty=f"no LQ/HQ pairs found for {dataset} ({len(incomplete)} unpaired files).")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad input)."""
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
