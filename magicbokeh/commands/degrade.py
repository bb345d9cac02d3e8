"""``python -m magicbokeh degrade IMAGE -o OUT.png``: simulate a low-quality capture of a photo.

A thin front door over :func:`magicbokeh.degradation.degrade`. The output has the input's size. The
same ``--seed`` gives a byte-identical PNG; without it a seed is drawn and printed so the run can be
repeated.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import MagicBokehError

logger = logging.getLogger(__name__)

# Mirrors magicbokeh.degradation (not imported here: configure_parser must stay light).
_PRESETS = ("realesrgan", "zoom")
_MAX_SCALE = 16


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``degrade`` arguments."""
    parser.add_argument("image", help="photo file (PNG, JPEG, WebP, TIFF...)")
    parser.add_argument("-o", "--output", required=True, help="output PNG, same size as the input")
    parser.add_argument("--preset", choices=_PRESETS, default=_PRESETS[0],
                        help="realesrgan: Real-ESRGAN second-order degradation (default); "
                        "zoom: digital zoom (downscale, mild blur and noise, JPEG 75-90)")
    parser.add_argument("--scale", type=float, default=4.0,
                        help=f"resolution loss in [1, {_MAX_SCALE}]: the low-quality image is 1/scale of "
                        "the input per side before the upscale back (default 4)")
    parser.add_argument("--seed", type=int, help="random seed >= 0 (default: drawn and printed)")
    parser.add_argument("--sharpen", action="store_true",
                        help="unsharp-mask the photo first, as Real-ESRGAN does to its ground truth")


def _fresh_seed() -> int:
    """A random 32-bit seed: the OS entropy of a SeedSequence, XOR-folded to 32 bits."""
    import numpy as np

    entropy = int(np.random.SeedSequence().entropy)
    seed = 0
    while entropy:
        seed ^= entropy & 0xFFFFFFFF
        entropy >>= 32
    return seed


def run(args: argparse.Namespace) -> int:
    """Degrade ``args.image`` into ``args.output``; returns the exit status."""
    from ..degradation import degrade
    from ..depth.from_photo import open_photo
    from ..images import save_png

    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise MagicBokehError(f"-o must name a .png file (lossless, so no extra JPEG); got {str(output)!r}.")
    if args.seed is not None and args.seed < 0:
        raise MagicBokehError(f"--seed must be a non-negative integer; got {args.seed}.")
    if not (1.0 <= args.scale <= _MAX_SCALE):  # also refuses NaN
        raise MagicBokehError(f"scale must be in [1, {_MAX_SCALE}] (4 = Real-ESRGAN x4); got {args.scale:g}.")
    from ..output_paths import check_no_clash, check_writable_folder

    check_no_clash([args.image], [("-o", output)])
    check_writable_folder(output.expanduser().parent, "the output")
    photo = open_photo(args.image)  # a phone portrait: the original it carries, not its blurred primary
    seed = args.seed
    if seed is None:
        seed = _fresh_seed()
        # Printed even with -q: without it the output cannot be reproduced.
        print(f"seed: {seed}")
    lq = degrade(photo.rgb, preset=args.preset, scale=args.scale, seed=seed, sharpen=args.sharpen)
    save_png(output, lq)
    logger.info("degraded %s with %s x%g, seed %d", args.image, args.preset, args.scale, seed)
    if not args.quiet:
        w, h = photo.size
        print(f"wrote {output} ({w}x{h}, {args.preset}, scale {args.scale:g}, seed {seed})")
    return 0
