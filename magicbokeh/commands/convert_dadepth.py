"""``python -m magicbokeh convert-dadepth SRC OUT_DIR [--config CONFIG.json]``.

Writes a standard transformers folder that ``AutoModelForDepthEstimation.from_pretrained(OUT_DIR)``
loads with no magicbokeh import (the transformers convention for foreign checkpoints).
"""

from __future__ import annotations

import argparse
import sys
import time


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="DAdepth.pth path, 'dadepth' (the official file, LinxiaoShi/Magicbokeh), "
                        "or a Hub spec REPO/FILE.pth; any upstream Depth Anything V2 checkpoint")
    parser.add_argument("out_dir", help="output folder (config.json + model.safetensors + preprocessor_config.json)")
    parser.add_argument("--config", metavar="CONFIG.json",
                        help="transformers config for other model sizes (default: the official ViT-L)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT_DIR even when it holds files other than an earlier conversion "
                        "(never the current folder, nor a folder holding SRC)")


def run(args: argparse.Namespace) -> int:
    from ..depth.convert_dadepth import convert_dadepth

    t0 = time.perf_counter()
    out = convert_dadepth(args.src, args.out_dir, config=args.config, overwrite=args.overwrite)
    if not getattr(args, "quiet", False):
        print(f"wrote {out} in {time.perf_counter() - t0:.1f} s; load it with "
              f"AutoModelForDepthEstimation.from_pretrained({str(out)!r}) or --depth-model {out}", file=sys.stdout)
    return 0
