"""Command line: ``python -m magicbokeh render IMAGE -o OUT.png [options]``.

A thin front door over :func:`magicbokeh.pipeline.render`: every option becomes a RenderSettings
field or a Focus, bad input ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import MagicBokehError
from .settings import BLADES_RANGE, K_DEFAULT, K_RANGE

EXIT_BAD_INPUT = 2

#: Further commands, one module each under magicbokeh/commands/: ``configure_parser(parser)`` adds
#: the arguments (imports nothing heavy), ``run(args) -> int`` does the work.
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "degrade": ("magicbokeh.commands.degrade", "simulate a low-quality capture (Real-ESRGAN or digital zoom)"),
    "convert-dadepth": ("magicbokeh.commands.convert_dadepth",
                        "convert DAdepth.pth (or any upstream Depth Anything V2 .pth) to a transformers folder"),
    "sweep": ("magicbokeh.commands.sweep", "render an aperture or focus sweep (GIF, MP4, PNG strip or frames)"),
}


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels (e.g. 640,360); got {text!r}") from None
    return x, y


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m magicbokeh",
        description="Restore a photo and render lens blur from a focus point and a blur strength K.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    # The same switches after the command (python -m magicbokeh render ... -q) work too.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", parents=[common], help="render one image or every image in a folder")
    r.add_argument("image", help="photo file, or a folder of photos")
    r.add_argument("-o", "--output", required=True, help="output PNG (or output folder for a folder input)")
    r.add_argument(
        "--depth",
        default="auto",
        help="auto (a Depth Anything model if available, else approximate) | approximate | a depth model "
        "(dadepth | small | base | large | hub id | transformers folder | upstream .pth) | a disparity "
        "map file (.png 8/16-bit, .npy; any size) | a folder of maps named like the photos (default: auto)",
    )
    r.add_argument(
        "--depth-model", metavar="MODEL",
        help="depth model used by --depth auto: dadepth (MagicBokeh's DA depth) | small | base | large | "
        "hub id | folder | .pth (env MAGICBOKEH_DEPTH_MODEL; default: DA depth on a GPU when its "
        "weights are present, else Depth Anything V2 Small)",
    )
    r.add_argument("--depth-input-size", type=int, default=518, metavar="PX",
                   help="depth network input: shorter side in pixels, a multiple of 14 (official 518)")
    r.add_argument("--depth-is-depth", action="store_true", help="the supplied map is depth (far = large)")
    r.add_argument(
        "--max-side", type=int, metavar="PX",
        help="processing size: render photos whose long side exceeds PX (64-8192) at that long side "
        "(area downscale of the photo, map, mask and focus point); K stays in pixels of the processed "
        "image (official convention). Default: off (original size, official parity)",
    )
    r.add_argument(
        "--output-size", choices=("input", "processed"), default="input",
        help="with --max-side: resize the result back to the input's size (input, default) or keep "
        "the processed size",
    )
    focus = r.add_mutually_exclusive_group()
    focus.add_argument("--focus", type=_point, metavar="X,Y", help="focus pixel (column,row) of the upright photo")
    focus.add_argument("--focus-mask", metavar="MASK", help="subject mask image (non-zero = subject), or a folder of masks")
    focus.add_argument("--focus-disparity", type=float, metavar="F", help="focal plane disparity in [0, 1] (1 = nearest)")
    r.add_argument(
        "--focus-parity",
        action="store_true",
        help="official-demo focus: 8-bit disparity at exactly the pixel (default: median over a 7x7 window)",
    )
    r.add_argument(
        "--K", dest="k", type=float, default=K_DEFAULT,
        help=f"blur strength in [{K_RANGE[0]:g}, {K_RANGE[1]:g}]; 0 = no blur (default {K_DEFAULT:g})",
    )
    r.add_argument("--backend", default="classical", help="classical (default, no weights) | magicbokeh | two-stage")
    r.add_argument("--shape", choices=("circle", "polygon"), default="circle", help="aperture shape (classical)")
    r.add_argument("--blades", type=int, default=6, help=f"polygon blades, {BLADES_RANGE[0]}-{BLADES_RANGE[1]} (default 6)")
    r.add_argument("--rotation", type=float, default=0.0, metavar="DEG", help="polygon rotation in degrees")
    r.add_argument("--highlight-boost", action="store_true", help="brighten out-of-focus highlights")
    r.add_argument("--focal-range", type=float, default=0.0, metavar="W", help="disparity width in [0, 1] kept sharp around the focus")
    r.add_argument("--save-depth", metavar="D.png",
                   help="also write the disparity used (16-bit PNG, 1 = near); a folder for a folder input")
    r.add_argument("--save-defocus", metavar="M.png",
                   help="also write the defocus map |d-f|*K/32 (16-bit PNG); a folder for a folder input")
    r.add_argument("--json", action="store_true", help="print one JSON object describing the run")
    m = r.add_argument_group("MagicBokeh backend")
    m.add_argument("--base", help="SD2.1-base repo id or folder (env MAGICBOKEH_BASE)")
    m.add_argument("--checkpoint", help="lora.pkl path or repo id (env MAGICBOKEH_CHECKPOINT)")
    m.add_argument("--seed", type=int, help="VAE sampling seed (default 42)")
    m.add_argument("--tile-batch", type=int, help="tiles per forward pass")
    m.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), help="precision (default auto)")
    m.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    m.add_argument("--color-fix", choices=("adain", "wavelet", "none"), help="colour correction (default adain)")
    m.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA)")

    sub.add_parser("backends", parents=[common], help="list backends and whether they can run here")
    for name, (module, help_text) in EXTRA_COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=help_text)
        importlib.import_module(module).configure_parser(p)
    return parser


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    names = {"base": "base", "checkpoint": "checkpoint", "seed": "seed", "tile_batch": "tile_batch",
             "dtype": "dtype", "device": "device", "color_fix": "color_fix"}
    opts = {key: getattr(args, attr) for attr, key in names.items() if getattr(args, attr) is not None}
    if args.compile:
        opts["compile"] = True
    return opts


def _by_stem(folder: Path, stem: str, what: str) -> Path:
    for path in sorted(folder.iterdir()):
        if path.stem == stem and path.is_file():
            return path
    raise MagicBokehError(f"no {what} named {stem}.* in {folder}.")


def _is_model_folder(folder: Path) -> bool:
    """A transformers depth-model folder (as opposed to a folder of disparity maps)."""
    return (folder / "config.json").is_file()


def _render_one(args: argparse.Namespace, image: Path, output: Path, *, in_folder: bool) -> dict[str, Any]:
    from .images import save_png
    from .pipeline import Focus, RenderSettings, render

    depth: Any = args.depth
    if depth == "auto" and args.depth_model:
        depth = args.depth_model
    if in_folder and Path(depth).is_dir() and not _is_model_folder(Path(depth)):
        depth = str(_by_stem(Path(depth), image.stem, "depth map"))
    if args.focus is not None:
        focus = Focus.point(*args.focus, parity=args.focus_parity)
    elif args.focus_mask is not None:
        mask = Path(args.focus_mask)
        if mask.is_dir():
            mask = _by_stem(mask, image.stem, "focus mask")
        focus = Focus.mask(str(mask), parity=args.focus_parity)
    elif args.focus_disparity is not None:
        focus = Focus.disparity(args.focus_disparity)
    else:
        focus = Focus.auto()
    settings = RenderSettings(
        k=args.k,
        backend=args.backend,
        focal_range=args.focal_range,
        aperture=args.shape,
        blades=args.blades,
        rotation_deg=args.rotation,
        highlight_boost=args.highlight_boost,
        backend_options=_backend_options(args),
    )
    bars: list[Any] = []

    def progress(fraction: float, stage: str) -> None:
        if args.quiet or in_folder:
            return
        if not bars:  # created on first use, so errors raised before any work print cleanly
            from tqdm import tqdm

            bars.append(tqdm(total=100, unit="%", leave=False, file=sys.stderr))
        bars[0].set_description(stage)
        bars[0].n = round(100 * fraction)
        bars[0].refresh()

    try:
        result = render(str(image), depth=depth, depth_is_depth=args.depth_is_depth, focus=focus,
                        settings=settings, progress=progress if args.backend != "classical" else None,
                        depth_input_size=args.depth_input_size, max_side=getattr(args, "max_side", None),
                        match_input_size=getattr(args, "output_size", "input") == "input")
    finally:
        if bars:
            bars[0].close()
    save_png(output, result.image)
    info = result.info()
    info["input"] = str(image)
    info["output"] = str(output)
    # For a folder input the --save-* paths are folders, with one map per photo stem.
    for flag, key, data in (("save_depth", "depth_output", result.disparity),
                            ("save_defocus", "defocus_output", result.defocus)):
        target = getattr(args, flag)
        if target:
            path = Path(target) / f"{image.stem}.png" if in_folder else Path(target)
            info[key] = str(save_png(path, data, bits=16))
    return info


def cmd_render(args: argparse.Namespace) -> int:
    from .images import IMAGE_SUFFIXES

    source = Path(args.image)
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise MagicBokehError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {source}.")
        out_dir = Path(args.output)
        if out_dir.suffix.lower() in IMAGE_SUFFIXES:
            raise MagicBokehError("for a folder input, -o must be an output folder, not a file.")
        out_dir.mkdir(parents=True, exist_ok=True)
        from tqdm import tqdm

        results, failures = [], []
        for image in tqdm(images, desc="rendering", unit="image", disable=args.quiet, file=sys.stderr):
            try:
                results.append(_render_one(args, image, out_dir / f"{image.stem}.png", in_folder=True))
            except MagicBokehError as exc:
                failures.append({"input": str(image), "error": str(exc)})
                print(f"error: {image.name}: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"results": results, "failures": failures}, indent=2))
        return EXIT_BAD_INPUT if failures else 0
    info = _render_one(args, source, Path(args.output), in_folder=False)
    if args.json:
        print(json.dumps(info, indent=2))
    elif not args.quiet:
        print(f"wrote {args.output} ({info['backend']}, {info['depth_source']}, "
              f"focus disparity {info['focus_disparity']:.3f}, {info['timings_s']['total']:.2f} s)")
        for message in info["messages"]:
            print(f"  note: {message}")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from .backends import backend_availability
    from .depth import depth_status

    for name, status in backend_availability().items():
        print(f"{name:12s} {'ready' if status.ok else 'unavailable'}: {status.reason}")
    ok, sentence = depth_status()
    print(f"{'depth':12s} {'ready' if ok else 'fallback'}: {sentence}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in EXTRA_COMMANDS:
            return importlib.import_module(EXTRA_COMMANDS[args.command][0]).run(args)
        return {"render": cmd_render, "backends": cmd_backends}[args.command](args)
    except MagicBokehError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; try a smaller image or set MAGICBOKEH_MAX_MEGAPIXELS lower.", file=sys.stderr)
        return 1
    except Exception as exc:  # last resort: one line, the traceback only with -v
        if args.verbose:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return 1
