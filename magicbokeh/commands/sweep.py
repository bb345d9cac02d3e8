"""``python -m magicbokeh sweep IMAGE -o OUT --kind aperture|focus --frames N``: a sweep animation.

Aperture sweep: K from 0 to ``--k-max`` at a fixed focus, or one frame per multiple of ``--K`` with
``--k-multiples 1,2,3`` (the first frame equals ``render --K K``). Focus sweep: the focal plane from the
nearest to the farthest disparity at the fixed ``--K``. ``OUT`` decides the format: ``.gif``,
``.mp4`` (needs imageio[ffmpeg]), ``.png`` (a strip, or a grid when wide) or a folder of frames.
The output is checked before anything is rendered. See :mod:`magicbokeh.sweep`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import MagicBokehError
from ..settings import K_DEFAULT, K_RANGE


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of the sweep command (the render options it shares keep render's names)."""
    from ..cli import add_backend_options, add_depth_options, add_focus_options, add_optics_options
    from .subject_options import add_subject_options
    from ..sweep import DEFAULT_FPS, DEFAULT_FRAMES, MAX_FRAMES, MIN_FRAMES, SWEEP_KINDS

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
    parser.add_argument("--frames", type=int, default=None,
                        help=f"number of frames, {MIN_FRAMES}-{MAX_FRAMES} (default {DEFAULT_FRAMES})")
    parser.add_argument("--k-max", type=float, default=None,
                        help=f"largest K of an aperture sweep, (0, {K_RANGE[1]:g}] (default {K_RANGE[1]:g})")
    parser.add_argument("--K", dest="k", type=float, default=K_DEFAULT,
                        help=f"blur strength of a focus sweep, or the base K of --k-multiples, "
                             f"[{K_RANGE[0]:g}, {K_RANGE[1]:g}] (default {K_DEFAULT:g})")
    parser.add_argument("--k-multiples", metavar="M1,M2,...", default=None,
                        help="aperture sweep: one frame per multiple of --K (e.g. 1,2,3 renders K, 2K, 3K, "
                             "'from 1x to 3x blur'; multiple 1 equals render --K K); replaces --frames and --k-max")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help=f"GIF/MP4 frames per second, 0.1-60 (default {DEFAULT_FPS:g})")
    add_depth_options(parser)
    add_focus_options(parser, mask_help="subject mask image (non-zero = subject)", prefix="aperture sweep: ")
    add_subject_options(parser)
    add_optics_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object describing the sweep")
    add_backend_options(parser)


def run(args: argparse.Namespace) -> int:
    """Render the sweep and write it; bad input raises MagicBokehError (one line, exit 2)."""
    from ..cli import ProgressBar, depth_from_args, focus_from_args, settings_from_args
    from ..request import RenderRequest
    from .subject_options import FrameRecorder, check_subject_args, request_fields, save_mask
    from ..sweep import (DEFAULT_FRAMES, aperture_multiples, check_fps, check_frames, parse_k_multiples,
                         prepare_output, render_sweep, save_sweep, sweep_values)

    # Everything that can be checked without rendering is checked first, the output last (it may
    # create folders).
    if not Path(args.image).expanduser().is_file():
        raise MagicBokehError(f"cannot read image {args.image!r}: no such file.")
    multiples = None
    if args.k_multiples is not None:
        if args.kind != "aperture":
            raise MagicBokehError("--k-multiples applies to an aperture sweep (--kind aperture).")
        if args.frames is not None or args.k_max is not None:
            raise MagicBokehError("--k-multiples sets the frames (one per multiple of --K); drop --frames and --k-max.")
        multiples = parse_k_multiples(args.k_multiples)
        aperture_multiples(args.k, multiples)
    frames = DEFAULT_FRAMES if args.frames is None else args.frames
    k_max = K_RANGE[1] if args.k_max is None else args.k_max
    check_frames(frames)
    check_fps(args.fps)
    if args.kind == "aperture" and multiples is None:
        sweep_values("aperture", frames, k_max=k_max)
    settings = settings_from_args(args, args.k if args.kind == "focus" or multiples else K_DEFAULT).checked()
    focus_from_args(args)  # a NaN focus point is refused before anything loads
    check_subject_args(args, sweep_kind=args.kind)
    from ..cli import _files_in
    from ..output_paths import check_no_clash

    check_no_clash([args.image, *_files_in(depth_from_args(args)), *_files_in(args.focus_mask)],
                   [("-o", args.output), ("--save-mask", args.save_mask)])
    prepare_output(args.output)
    with ProgressBar(enabled=not args.quiet) as progress:
        request = RenderRequest(args.image, depth=depth_from_args(args), depth_is_depth=args.depth_is_depth,
                                focus=focus_from_args(args), settings=settings,
                                depth_model=args.depth_model,
                                depth_input_size=args.depth_input_size, **request_fields(args))
        frame = FrameRecorder()  # keeps the last frame's subject mask and focus report
        result = render_sweep(request, kind=args.kind, frames=frames, k_max=k_max, k_multiples=multiples,
                              progress=progress, render=frame)
    written = save_sweep(result.frames, args.output, fps=args.fps)
    info = result.info()
    info["input"] = str(args.image)
    info["output"] = str(args.output)
    info["files"] = [str(p) for p in written]
    info.update(frame.report())
    if args.save_mask:
        info["mask_output"] = save_mask(args.save_mask, frame.last)
    if args.json:
        print(json.dumps(info, indent=2))
    elif not args.quiet:
        swept = "K" if args.kind == "aperture" else "focus disparity"
        print(f"wrote {args.output} ({len(result.frames)} frames, {swept} {result.values[0]:.3g} -> "
              f"{result.values[-1]:.3g}, {result.backend}, {result.depth_source}, {result.seconds:.2f} s)")
        for message in result.messages:
            print(f"  note: {message}")
    return 0
