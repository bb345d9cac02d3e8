"""Command line: ``python -m magicbokeh render IMAGE -o OUT.png [options]``.

A thin front door over :func:`magicbokeh.pipeline.run`: every option becomes a RenderSettings
field or a Focus, bad input ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .entrypoint import EXIT_BAD_INPUT, configure_logging, run_command
from .errors import MagicBokehError
from .commands.subject_options import add_subject_options, check_subject_args
from .settings import BLADES_RANGE, K_DEFAULT, K_RANGE


#: Further commands, one module each under magicbokeh/commands/: ``configure_parser(parser)`` adds
#: the arguments (imports nothing heavy), ``run(args) -> int`` does the work.
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "degrade": ("magicbokeh.commands.degrade", "simulate a low-quality capture (Real-ESRGAN or digital zoom)"),
    "convert-dadepth": ("magicbokeh.commands.convert_dadepth",
                        "convert DAdepth.pth (or any upstream Depth Anything V2 .pth) to a transformers folder"),
    "sweep": ("magicbokeh.commands.sweep", "render an aperture or focus sweep (GIF, MP4, PNG strip or frames)"),
    "mask": ("magicbokeh.commands.mask", "write a subject mask (official LDF saliency, or --point clicks)"),
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
    add_depth_options(r, folder_maps=True)
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
    add_focus_options(r, mask_help="subject mask image (non-zero = subject), or a folder of masks")
    add_subject_options(r, folder=True)
    r.add_argument(
        "--K", dest="k", type=float, default=K_DEFAULT,
        help=f"blur strength in [{K_RANGE[0]:g}, {K_RANGE[1]:g}]; 0 = no blur (default {K_DEFAULT:g})",
    )
    add_optics_options(r)
    r.add_argument("--save-depth", metavar="D.png",
                   help="also write the disparity used (16-bit PNG, 1 = near); a folder for a folder input")
    r.add_argument("--save-defocus", metavar="M.png",
                   help="also write the defocus map |d-f|*K/32 (16-bit PNG); a folder for a folder input")
    r.add_argument("--json", action="store_true", help="print one JSON object describing the run")
    add_backend_options(r)

    sub.add_parser("backends", parents=[common], help="list backends and whether they can run here")
    for name, (module, help_text) in EXTRA_COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=help_text)
        importlib.import_module(module).configure_parser(p)
    return parser


# Options shared by render and sweep (one definition, so both commands agree).


def add_depth_options(parser: argparse.ArgumentParser, *, folder_maps: bool = False) -> None:
    """--depth, --depth-model, --depth-input-size, --depth-is-depth."""
    parser.add_argument(
        "--depth", default="auto",
        help="auto (the photo's own depth map when it carries one: iPhone portrait HEIC, Google Camera GDepth or "
        "Dynamic Depth JPEG; else a Depth Anything model if available, else approximate) | embedded (only the "
        "photo's own map) | approximate | a depth model "
        "(dadepth | small | base | large | hub id | transformers folder | upstream .pth) | a disparity "
        "map file (.png 8/16-bit, .npy; any size)"
        + (" | a folder of maps named like the photos" if folder_maps else "") + " (default: auto)",
    )
    parser.add_argument(
        "--depth-model", metavar="MODEL",
        help="depth model used by --depth auto: dadepth (MagicBokeh's DA depth) | small | base | large | "
        "hub id | folder | .pth (env MAGICBOKEH_DEPTH_MODEL; default: DA depth on a GPU when its "
        "weights are present, else Depth Anything V2 Small)",
    )
    parser.add_argument("--depth-input-size", type=int, default=518, metavar="PX",
                        help="depth network input: shorter side in pixels, a multiple of 14 (official 518)")
    parser.add_argument("--depth-is-depth", action="store_true", help="the supplied map is depth (far = large)")


def add_focus_options(parser: argparse.ArgumentParser, *, mask_help: str, prefix: str = "") -> None:
    """--focus X,Y | --focus-mask | --focus-disparity, and --focus-parity."""
    focus = parser.add_mutually_exclusive_group()
    focus.add_argument("--focus", type=_point, metavar="X,Y",
                       help=prefix + "focus pixel (column,row) of the upright photo (default: automatic)")
    focus.add_argument("--focus-mask", metavar="MASK", help=prefix + mask_help)
    focus.add_argument("--focus-disparity", type=float, metavar="F",
                       help=prefix + "focal plane disparity in [0, 1] (1 = nearest)")
    parser.add_argument(
        "--focus-parity", action="store_true",
        help="official-demo focus: 8-bit disparity at exactly the pixel (default: median over a 7x7 window)",
    )


def add_optics_options(parser: argparse.ArgumentParser) -> None:
    """--backend and the classical renderer's optics."""
    parser.add_argument("--backend", default="classical",
                        help="classical (default, no weights) | magicbokeh | two-stage")
    parser.add_argument("--shape", choices=("circle", "polygon"), default="circle", help="aperture shape (classical)")
    parser.add_argument("--blades", type=int, default=6,
                        help=f"polygon blades, {BLADES_RANGE[0]}-{BLADES_RANGE[1]} (default 6)")
    parser.add_argument("--rotation", type=float, default=0.0, metavar="DEG", help="polygon rotation in degrees")
    parser.add_argument("--highlight-boost", action="store_true", help="brighten out-of-focus highlights")
    parser.add_argument("--focal-range", type=float, default=0.0, metavar="W",
                        help="disparity width in [0, 1] kept sharp around the focus")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """The MagicBokeh backend's sources and run options."""
    m = parser.add_argument_group("MagicBokeh backend")
    m.add_argument("--base", help="SD2.1-base repo id or folder (env MAGICBOKEH_BASE)")
    m.add_argument("--checkpoint", help="lora.pkl path, trained checkpoint folder or repo id (env MAGICBOKEH_CHECKPOINT)")
    m.add_argument("--seed", type=int, help="VAE sampling seed (default 42)")
    m.add_argument("--tile-batch", type=int, help="tiles per forward pass")
    m.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), help="precision (default auto)")
    m.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    m.add_argument("--color-fix", choices=("adain", "wavelet", "none"), help="colour correction (default adain)")
    m.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA)")
    t = parser.add_argument_group("two-stage backend")
    t.add_argument("--restored-depth", metavar="MODEL",
                   help="estimate depth again on the restored photo and blur with it, as published two-stage "
                        "baselines do: auto | small | base | large | dadepth | a hub id, folder or .pth "
                        "(default: the input's depth, the map the joint model sees)")


def depth_from_args(args: argparse.Namespace) -> Any:
    """The core's ``depth`` argument. ``--depth-model`` travels separately (RenderRequest.depth_model), so
    ``--depth auto`` still prefers the photo's own depth map over the configured model."""
    return args.depth


def focus_from_args(args: argparse.Namespace, *, mask: str | None = None) -> Any:
    """The Focus of the focus options (``mask`` replaces ``--focus-mask``, e.g. one of a folder)."""
    from .commands.subject_options import point_focus
    from .pipeline import Focus

    if getattr(args, "point", None):
        return point_focus(args)
    if args.focus is not None:
        return Focus.point(*args.focus, parity=args.focus_parity)
    if args.focus_mask is not None:
        return Focus.mask(mask or args.focus_mask, parity=args.focus_parity)
    if args.focus_disparity is not None:
        return Focus.disparity(args.focus_disparity)
    return Focus.auto()


def settings_from_args(args: argparse.Namespace, k: float) -> Any:
    """RenderSettings of the optics and backend options, at blur strength ``k``."""
    from .pipeline import RenderSettings

    if getattr(args, "restored_depth", None) and args.backend != "two-stage":
        raise MagicBokehError(f"--restored-depth applies to --backend two-stage; got --backend {args.backend}.")
    return RenderSettings(
        k=k,
        backend=args.backend,
        focal_range=args.focal_range,
        aperture=args.shape,
        blades=args.blades,
        rotation_deg=args.rotation,
        highlight_boost=args.highlight_boost,
        backend_options=_backend_options(args),
    )


class ProgressBar:
    """A tqdm bar on stderr fed by the core's ``progress(fraction, stage)``; created on first use,
    so errors raised before any work print cleanly. Use as a context manager."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Any = None

    def __call__(self, fraction: float, stage: str) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=100, unit="%", leave=False, file=sys.stderr)
        self._bar.set_description(stage)
        self._bar.n = round(100 * fraction)
        self._bar.refresh()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    names = {"base": "base", "checkpoint": "checkpoint", "seed": "seed", "tile_batch": "tile_batch",
             "dtype": "dtype", "device": "device", "color_fix": "color_fix"}
    opts = {key: getattr(args, attr) for attr, key in names.items() if getattr(args, attr) is not None}
    if args.compile:
        opts["compile"] = True
    if getattr(args, "restored_depth", None):
        from .two_stage import RESTORED_DEPTH

        opts[RESTORED_DEPTH] = args.restored_depth
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
    from .commands.subject_options import request_fields, save_mask
    from .images import save_png
    from .pipeline import run
    from .request import RenderRequest

    depth: Any = depth_from_args(args)
    if in_folder and Path(depth).is_dir() and not _is_model_folder(Path(depth)):
        depth = str(_by_stem(Path(depth), image.stem, "depth map"))
    mask = args.focus_mask
    if mask is not None and Path(mask).is_dir():
        mask = str(_by_stem(Path(mask), image.stem, "focus mask"))
    with ProgressBar(enabled=not (args.quiet or in_folder)) as progress:
        request = RenderRequest(str(image), depth=depth, depth_is_depth=args.depth_is_depth,
                                focus=focus_from_args(args, mask=mask), settings=settings_from_args(args, args.k),
                                depth_model=args.depth_model,
                                depth_input_size=args.depth_input_size, max_side=args.max_side,
                                match_input_size=args.output_size == "input", **request_fields(args))
        result = run(request, progress if args.backend != "classical" else None)
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
    if args.save_mask:
        info["mask_output"] = save_mask(Path(args.save_mask) / f"{image.stem}.png" if in_folder else args.save_mask,
                                        result)
    return info


def _files_in(spec: Any) -> list[Path]:
    """The input files a --depth / --focus-mask value names: one file, a folder's files, or none."""
    if spec is None or not isinstance(spec, str):
        return []
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return [p for p in path.iterdir() if p.is_file()]
    return []


def check_render_args(args: argparse.Namespace) -> None:
    """Everything about a render that can be checked without loading anything: option values
    (NaN/inf), output suffixes, outputs that would overwrite an input or each other, and whether
    the output folders are writable. For a folder input ``args.images`` must be set."""
    from .output_paths import (IMAGE_OUTPUT_SUFFIXES, MAP_OUTPUT_SUFFIXES, check_no_clash, check_suffix,
                               check_unique_stems, check_writable_folder)

    from .processing import check_max_side

    settings_from_args(args, args.k).checked()
    focus_from_args(args)  # a NaN focus point is refused here
    check_subject_args(args)
    check_max_side(args.max_side)
    images: list[Path] | None = getattr(args, "images", None)
    inputs = [*_files_in(depth_from_args(args)), *_files_in(args.focus_mask)]
    if images is None:
        check_suffix(args.output, IMAGE_OUTPUT_SUFFIXES, "-o")
        for flag in ("save_depth", "save_defocus"):
            if getattr(args, flag):
                check_suffix(getattr(args, flag), MAP_OUTPUT_SUFFIXES, "--" + flag.replace("_", "-"))
        check_no_clash([args.image, *inputs], [("-o", args.output), ("--save-depth", args.save_depth),
                                               ("--save-defocus", args.save_defocus), ("--save-mask", args.save_mask)])
        folders = {Path(p).expanduser().parent for p in (args.output, args.save_depth, args.save_defocus,
                                                           args.save_mask) if p}
    else:
        check_unique_stems(images)
        outputs = []
        for image in images:
            for flag, folder in (("-o", args.output), ("--save-depth", args.save_depth),
                                 ("--save-defocus", args.save_defocus), ("--save-mask", args.save_mask)):
                if folder:
                    outputs.append((f"{flag} for {image.name}", Path(folder) / f"{image.stem}.png"))
        check_no_clash([*images, *inputs], outputs)
        folders = {Path(p).expanduser() for p in (args.output, args.save_depth, args.save_defocus, args.save_mask) if p}
    for folder in sorted(folders):
        check_writable_folder(folder, "the output")


def cmd_render(args: argparse.Namespace) -> int:
    from .images import IMAGE_SUFFIXES

    if args.backend in ("classical", "two-stage"):
        from .lens_blur import warm_up_in_background

        warm_up_in_background()  # loads the compiled renderer while the photo is read

    source = Path(args.image)
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise MagicBokehError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {source}.")
        out_dir = Path(args.output)
        if out_dir.suffix.lower() in IMAGE_SUFFIXES:
            raise MagicBokehError("for a folder input, -o must be an output folder, not a file.")
        args.images = images
        check_render_args(args)
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
    args.images = None
    check_render_args(args)
    if args.depth not in ("auto", "approximate") and Path(args.depth).is_file():
        from .images import prefetch_map

        prefetch_map(args.depth, what="depth map" if args.depth_is_depth else "disparity map")
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
    configure_logging(args.verbose, args.quiet)

    def work() -> int:
        if args.command in EXTRA_COMMANDS:
            return importlib.import_module(EXTRA_COMMANDS[args.command][0]).run(args)
        return {"render": cmd_render, "backends": cmd_backends}[args.command](args)

    return run_command(work, verbose=args.verbose)
