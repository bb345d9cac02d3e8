"""``python -m magicbokeh mask PHOTO -o MASK.png [--saliency-model PATH | --point X,Y[,LABEL] ...]``.

Writes the subject mask the focus would use, at the photo's (upright) size, as an 8-bit PNG:

* default: the official salient-object mask (LDF ``model-40``, soft 0..255, exactly as
  ``prepare_data.py``); the weights come from ``--saliency-model`` or ``MAGICBOKEH_SALIENCY_MODEL``;
* with ``--point``: the subject under the clicks (Segment Anything, or GrabCut without its weights),
  0 or 255.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import MagicBokehError


def _point3(text: str) -> tuple[float, float, int]:
    parts = text.split(",")
    try:
        vals = [float(v) for v in parts]
    except ValueError:
        vals = []
    if len(vals) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected X,Y or X,Y,LABEL (label 1 subject, 0 not); got {text!r}")
    return vals[0], vals[1], int(vals[2]) if len(vals) == 3 else 1


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``mask`` arguments (imports nothing heavy)."""
    parser.add_argument("image", help="photo file")
    parser.add_argument("-o", "--output", required=True, help="output mask, an 8-bit single-channel .png")
    parser.add_argument("--saliency-model", metavar="PATH",
                        help="LDF model-40 (.pth or converted .safetensors); default $MAGICBOKEH_SALIENCY_MODEL")
    parser.add_argument("--point", action="append", type=_point3, metavar="X,Y[,LABEL]",
                        help="select the subject under this pixel instead (repeat; label 1 = subject, "
                        "0 = not the subject) with Segment Anything, or GrabCut without its weights")
    parser.add_argument("--sam-model", metavar="ID_OR_DIR",
                        help="Segment Anything checkpoint for --point (default $MAGICBOKEH_SAM_MODEL or "
                        "facebook/sam-vit-base)")
    parser.add_argument("--json", action="store_true", help="print one JSON object describing the mask")


def run(args: argparse.Namespace) -> int:
    """Compute the mask and publish it atomically; returns the exit status."""
    import cv2
    import numpy as np

    from ..depth.from_photo import open_photo
    from ..publish import publish_file
    from ..subject.ldf import WEIGHTS_SOURCE, as_uint8_rgb, load_ldf, resolve_saliency_model, saliency_mask

    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise MagicBokehError(f"-o must name a .png file; got {str(output)!r}.")
    if not output.parent.is_dir():
        raise MagicBokehError(f"the folder of {str(output)!r} does not exist.")
    photo = open_photo(args.image)  # a phone portrait: the original it carries, not its blurred primary
    rgb = as_uint8_rgb(photo.rgb)
    if args.point:
        from ..subject.sam import segment_points

        result = segment_points(rgb, args.point, model=args.sam_model)
        mask = result.mask.astype(np.uint8) * 255
        info = {"source": result.source, "model": result.model, "messages": result.messages}
    else:
        path = resolve_saliency_model(args.saliency_model)
        if path is None:
            raise MagicBokehError(
                "no saliency model configured: pass --saliency-model PATH or set MAGICBOKEH_SALIENCY_MODEL "
                f"(or click with --point). Weights: {WEIGHTS_SOURCE}"
            )
        mask = saliency_mask(load_ldf(path), rgb)
        info = {"source": "ldf", "model": str(path), "messages": []}
    with publish_file(output) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(mask)):
            raise MagicBokehError(f"cannot write {str(output)!r}.")
    h, w = mask.shape
    info.update({"output": str(output), "width": w, "height": h,
                 "nonzero_fraction": round(float(np.count_nonzero(mask)) / mask.size, 6)})
    if args.json:
        print(json.dumps(info))
    elif not getattr(args, "quiet", False):
        for line in info["messages"]:
            print(line, file=sys.stderr)
        print(f"wrote {output} ({w}x{h}, {info['source']} mask, {100 * info['nonzero_fraction']:.1f} % non-zero)")
    return 0
