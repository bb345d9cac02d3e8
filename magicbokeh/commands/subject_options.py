"""Subject options shared by ``render`` and ``sweep``: ``--point``, ``--subject``, ``--saliency-model``,
``--sam-model`` and ``--save-mask`` (one definition, so both commands agree). See docs/subject-focus.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import MagicBokehError


def _point3(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected X,Y or X,Y,LABEL (label 1 subject, 0 not); got {text!r}")
    return vals


def add_subject_options(parser: argparse.ArgumentParser, *, folder: bool = False) -> None:
    """Add the subject options (imports nothing heavy)."""
    g = parser.add_argument_group("subject (docs/subject-focus.md)")
    g.add_argument("--point", action="append", type=_point3, metavar="X,Y[,LABEL]",
                   help="focus on the subject under this pixel of the upright photo (repeat; label 1 = "
                        "subject, 0 = not the subject): Segment Anything, or GrabCut without its weights. "
                        "Instead of --focus / --focus-mask / --focus-disparity")
    g.add_argument("--subject", action="store_true",
                   help="keep the whole subject sharp (our extension): focal plane = the official median "
                        "under the mask (--focus-mask, --point or the salient mask), defocus 0 on the "
                        "subject with a 2 px feathered edge, the background blurred as without it")
    g.add_argument("--saliency-model", metavar="PATH",
                   help="LDF model-40 (.pth or converted .safetensors): automatic focus uses the official "
                        "salient-object rule (env MAGICBOKEH_SALIENCY_MODEL; default: nearest large region)")
    g.add_argument("--sam-model", metavar="ID_OR_DIR",
                   help="Segment Anything checkpoint for --point (env MAGICBOKEH_SAM_MODEL; default "
                        "facebook/sam-vit-base)")
    g.add_argument("--save-mask", metavar="M.png",
                   help="also write the subject mask the focus used (8-bit PNG, 255 = subject)"
                        + ("; a folder for a folder input" if folder else ""))


def point_focus(args: argparse.Namespace) -> Any:
    """``Focus.points`` of ``--point`` (None without it)."""
    from ..request import Focus

    points = getattr(args, "point", None)
    return Focus.points(points, parity=bool(getattr(args, "focus_parity", False))) if points else None


def check_subject_args(args: argparse.Namespace, *, sweep_kind: str | None = None) -> None:
    """Refuse combinations that cannot work, before anything loads.

    Raises:
        MagicBokehError: ``--point`` with another focus option, ``--subject`` with a pixel or disparity
            focus or in a focus sweep, or a ``--save-mask`` that is not a .png.
    """
    others = [flag for flag, attr in (("--focus", "focus"), ("--focus-mask", "focus_mask"),
                                      ("--focus-disparity", "focus_disparity"))
              if getattr(args, attr, None) is not None]
    if args.point and others:
        raise MagicBokehError(f"--point selects the focus; do not combine it with {', '.join(others)}.")
    no_mask = bool(others) and others[0] in ("--focus", "--focus-disparity")
    for flag, wanted in (("--subject", args.subject), ("--save-mask", args.save_mask)):
        if wanted and no_mask:
            raise MagicBokehError(f"{flag} needs a subject mask; {others[0]} gives none. Use --point X,Y "
                                  "(the subject under the pixel), --focus-mask or a saliency model.")
    if args.subject and sweep_kind == "focus":
        raise MagicBokehError("--subject keeps the subject's plane in focus; a focus sweep moves the "
                              "focus. Use --kind aperture.")
    if args.save_mask and not getattr(args, "images", None):
        from ..output_paths import check_suffix

        check_suffix(args.save_mask, (".png",), "--save-mask")
    from ..subject.ldf import resolve_saliency_model

    # A configured model must exist (says where the weights come from) when automatic focus would use
    # it; automatic focus without one has no mask to keep sharp or to save.
    auto = not others and not args.point
    model = resolve_saliency_model(args.saliency_model) if auto or args.saliency_model else None
    if model is None and auto:
        for flag, wanted in (("--subject", args.subject), ("--save-mask", args.save_mask)):
            if wanted:
                raise MagicBokehError(f"{flag} needs a subject mask: give --point X,Y, --focus-mask, or a "
                                      "saliency model (--saliency-model / MAGICBOKEH_SALIENCY_MODEL) for "
                                      "automatic focus.")


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~magicbokeh.request.RenderRequest` fields of the subject options."""
    return {"subject": bool(args.subject), "saliency_model": args.saliency_model, "sam_model": args.sam_model}


def save_mask(target: str | Path, result: Any) -> str:
    """Publish the mask ``result`` used at ``target`` (8-bit PNG); returns the path written.

    Raises:
        MagicBokehError: the render used no subject mask (automatic focus without a saliency model,
            a pixel or a disparity focus).
    """
    from ..images import save_png

    mask = getattr(result, "subject_mask", None)
    if mask is None:
        raise MagicBokehError("--save-mask: this render used no subject mask (give --point, --focus-mask "
                              "or a saliency model for automatic focus).")
    return str(save_png(target, mask.astype("float32") / 255.0))


class FrameRecorder:
    """The ``render`` of a sweep that remembers the last frame's result (its mask and focus report)."""

    def __init__(self) -> None:
        self.last: Any = None

    def __call__(self, request: Any, progress: Any = None) -> Any:
        from ..pipeline import run

        self.last = run(request, progress)
        return self.last

    def report(self) -> dict[str, Any]:
        """``focus_rule`` and ``subject`` of the frames (the same for every frame of an aperture sweep)."""
        return dict(getattr(self.last, "focus_report", None) or {})
