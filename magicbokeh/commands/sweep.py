"""``python -m magicbokeh sweep IMAGE -o OUT --kind aperture|focus --frames N``: a sweep animation.

Aperture sweep: K from 0 to ``--k-max`` at a fixed focus. Focus sweep: the focal plane from the
nearest to the farthest disparity at the fixed ``--K``. ``OUT`` decides the format: ``.gif``,
``.mp4`` (needs imageio[ffmpeg]), ``.png`` (a strip, or a grid when wide) or a folder of frames.
The output is checked before anything is rendered. See :mod:`magicbokeh.sweep`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import MagicBokehError
from ..settings import BLADES_RANGE, K_DEFAULT, K_RANGE


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of the sweep command (the render options it shares keep render's names)."""
    from ..cli import _point
    from ..sweep import DEFAULT_FPS, MAX_FRAMES, MIN_FRAMES, SWEEP_KINDS

    parser.description = ("Render one photo at evenly spaced blur strengths (aperture sweep) or focal "
                          "planes (focus sweep) and write a GIF, MP4, PNG strip or a folder of frames.")
    parser.add_argument("image", help="photo file")
    parser.add_argument("-o", "--output", required=True,
                        help="OUT.gif (animated) | OUT.mp4 (needs imageio[ffmpeg]) | OUT.png (all frames "
                             "in one strip, a grid when wider than 4096 px) | a folder (no suffix, or "
                             "existing) that will hold only frame_000.png, frame_001.png, ...")
    parser.add_argument("--kind", choices=SWEEP_KINDS, default="aperture",
                        help="aperture: K from 0 to --k-max at the fixed focus; focus: the focal plane "
                             "from the nearest to the farthest at the fixed --K (default aperture)")
    parser.add_argument("--frames", type=int, default=8,
                        help=f"number of frames, {MIN_FRAMES}-{MAX_FRAMES} (default 8)")
    parser.add_argument("--k-max", type=float, default=K_RANGE[1],
                        help=f"largest K of an aperture sweep, (0, {K_RANGE[1]:g}] (default {K_RANGE[1]:g})")
    parser.add_argument("--K", dest="k", type=float, default=K_DEFAULT,
                        help=f"blur strength of a focus sweep, [{K_RANGE[0]:g}, {K_RANGE[1]:g}] "
                             f"(default {K_DEFAULT:g})")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help=f"GIF/MP4 frames per second, 0.1-60 (default {DEFAULT_FPS:g})")
    parser.add_argument("--depth", default="auto",
                        help="auto (a Depth Anything model if available, else approximate) | approximate | "
                             "a depth model (dadepth | small | base | large | hub id | folder | .pth) | a "
                             "disparity map file (.png 8/16-bit, .npy; any size) (default auto)")
    parser.add_argument("--depth-model", metavar="MODEL",
                        help="depth model used by --depth auto: dadepth | small | base | large | hub id | "
                             "folder | .pth (env MAGICBOKEH_DEPTH_MODEL; default: automatic, as render)")
    parser.add_argument("--depth-input-size", type=int, default=518, metavar="PX",
                        help="depth network input: shorter side in pixels, a multiple of 14 (official 518)")
    parser.add_argument("--depth-is-depth", action="store_true", help="the supplied map is depth (far = large)")
    focus = parser.add_mutually_exclusive_group()
    focus.add_argument("--focus", type=_point, metavar="X,Y",
                       help="aperture sweep: focus pixel (column,row) of the upright photo (default: automatic)")
    focus.add_argument("--focus-mask", metavar="MASK", help="aperture sweep: subject mask image (non-zero = subject)")
    focus.add_argument("--focus-disparity", type=float, metavar="F",
                       help="aperture sweep: focal plane disparity in [0, 1] (1 = nearest)")
    parser.add_argument("--focus-parity", action="store_true",
                        help="official-demo focus: 8-bit disparity at exactly the pixel")
    parser.add_argument("--backend", default="classical", help="classical (default, no weights) | magicbokeh | two-stage")
    parser.add_argument("--shape", choices=("circle", "polygon"), default="circle", help="aperture shape (classical)")
    parser.add_argument("--blades", type=int, default=6,
                        help=f"polygon blades, {BLADES_RANGE[0]}-{BLADES_RANGE[1]} (default 6)")
    parser.add_argument("--rotation", type=float, default=0.0, metavar="DEG", help="polygon rotation in degrees")
    parser.add_argument("--highlight-boost", action="store_true", help="brighten out-of-focus highlights")
    parser.add_argument("--focal-range", type=float, default=0.0, metavar="W",
                        help="disparity width in [0, 1] kept sharp around the focus")
    parser.add_argument("--json", action="store_true", help="print one JSON object describing the sweep")
    m = parser.add_argument_group("MagicBokeh backend")
    m.add_argument("--base", help="SD2.1-base repo id or folder (env MAGICBOKEH_BASE)")
    m.add_argument("--checkpoint", help="lora.pkl path or repo id (env MAGICBOKEH_CHECKPOINT)")
    m.add_argument("--seed", type=int, help="VAE sampling seed (default 42)")
    m.add_argument("--tile-batch", type=int, help="tiles per forward pass")
    m.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), help="precision (default auto)")
    m.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    m.add_argument("--color-fix", choices=("adain", "wavelet", "none"), help="colour correction (default adain)")
    m.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA)")


def _focus(args: argparse.Namespace) -> Any:
    from ..pipeline import Focus

    if args.focus is not None:
        return Focus.point(*args.focus, parity=args.focus_parity)
    if args.focus_mask is not None:
        return Focus.mask(args.focus_mask, parity=args.focus_parity)
    if args.focus_disparity is not None:
        return Focus.disparity(args.focus_disparity)
    return Focus.auto()


def run(args: argparse.Namespace) -> int:
    """Render the sweep and write it; bad input raises MagicBokehError (one line, exit 2)."""
    import sys

    from ..cli import _backend_options
    from ..pipeline import RenderSettings
    from ..sweep import check_fps, check_frames, prepare_output, render_sweep, save_sweep, sweep_values

    # Everything that can be checked without rendering is checked first, the output last (it may
    # create folders).
    if not Path(args.image).expanduser().is_file():
        raise MagicBokehError(f"cannot read image {args.image!r}: no such file.")
    check_frames(args.frames)
    check_fps(args.fps)
    if args.kind == "aperture":
        sweep_values("aperture", args.frames, k_max=args.k_max)
    settings = RenderSettings(
        k=args.k if args.kind == "focus" else K_DEFAULT,
        backend=args.backend,
        focal_range=args.focal_range,
        aperture=args.shape,
        blades=args.blades,
        rotation_deg=args.rotation,
        highlight_boost=args.highlight_boost,
        backend_options=_backend_options(args),
    ).checked()
    prepare_output(args.output)
    bars: list[Any] = []

    def progress(fraction: float, stage: str) -> None:
        if args.quiet:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=100, unit="%", leave=False, file=sys.stderr))
        bars[0].set_description(stage)
        bars[0].n = round(100 * fraction)
        bars[0].refresh()

    try:
        depth = args.depth_model if args.depth == "auto" and args.depth_model else args.depth
        result = render_sweep(args.image, kind=args.kind, frames=args.frames, k_max=args.k_max,
                              depth=depth, depth_is_depth=args.depth_is_depth, focus=_focus(args),
                              settings=settings, progress=progress, depth_input_size=args.depth_input_size)
    finally:
        if bars:
            bars[0].close()
    written = save_sweep(result.frames, args.output, fps=args.fps)
    info = result.info()
    info["input"] = str(args.image)
    info["output"] = str(args.output)
    info["files"] = [str(p) for p in written]
    if args.json:
        print(json.dumps(info, indent=2))
    elif not args.quiet:
        swept = "K" if args.kind == "aperture" else "focus disparity"
        print(f"wrote {args.output} ({len(result.frames)} frames, {swept} {result.values[0]:.3g} -> "
              f"{result.values[-1]:.3g}, {result.backend}, {result.depth_source}, {result.seconds:.2f} s)")
        for message in result.messages:
            print(f"  note: {message}")
    return 0
