"""What the app shows besides the images: status lines, backend notes, the focus marker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from .. import app_support
from ..backends import Availability
from ..depth import from_photo
from ..images import HEIF_SUFFIXES, colourise_disparity, content_key, to_uint8, upright_pil
from ..notes import is_warning
from ..request import RenderResult
from .focus_words import focus_words

#: name -> (availability, menu label) of every registered backend.
BackendTable = Mapping[str, "tuple[Availability, str]"]


def upright(image: Any) -> Any:
    """The photo as a PIL image with its EXIF orientation applied.

    A path (or Gradio's ``{"path": ...}``) is decoded by our own code
    (:func:`magicbokeh.depth.from_photo.open_upload`: HEIC too, and for a phone portrait whose
    primary image is already blurred, the original it carries), so a corrupt or unsupported upload raises
    :class:`~magicbokeh.errors.MagicBokehError` with a message naming the file. Arrays are returned
    unchanged (the core's ``load_photo`` reads them).
    """
    if isinstance(image, dict):
        image = image.get("path")
    if isinstance(image, (str, Path)):
        return Image.fromarray(to_uint8(from_photo.open_upload(image).rgb))
    if not isinstance(image, Image.Image):
        return image
    return upright_pil(image)[0]


def image_key(image: Image.Image) -> str:
    """Content hash of an image's RGB pixels (identifies the copy the browser displays)."""
    return content_key(np.asarray(image.convert("RGB")))


def resolve_original(image: Image.Image | None, state: dict | None) -> Image.Image | None:
    """The full-resolution upright photo behind what the input component shows.

    After a click the component shows a marked copy; ``state`` remembers the original and the hash
    of that copy. Anything else in the component (a fresh upload, an example) is the original.
    """
    if image is None:
        return None
    image = upright(image)
    if state and state.get("original") is not None and state.get("display_key") == image_key(image):
        return state["original"]
    return image


def photo_source(original: Any, state: dict | None) -> Any:
    """What to render: the uploaded file itself when ``original`` is its photo (the file may carry
    a phone's depth map and focus point, which a decoded image has lost), else ``original``."""
    file = (state or {}).get("file")
    if (isinstance(file, (str, Path)) and original is not None and original is (state or {}).get("original")
            and Path(file).is_file()):
        return file
    return original


def file_state(state: dict | None, original: Any) -> dict:
    """The ``file`` entry of a click state, carried over while the photo stays the same."""
    if state and state.get("file") and state.get("original") is original:
        return {"file": state["file"]}
    return {}


def open_upload(file: Any) -> tuple[Image.Image, bool, str | None]:
    """(the uploaded photo as rendered, upright; whether the browser needs our PNG copy of it; the
    name of the depth format it carries, or None).

    A copy is needed for a HEIC/HEIF file (most browsers cannot show one) and for a phone portrait
    whose rendered photo is the original it carries rather than its (blurred) primary image.
    Raises MagicBokehError for an unreadable file, naming it.
    """
    photo = from_photo.open_upload(file)
    path = file.get("path") if isinstance(file, dict) else file
    heif = isinstance(path, (str, Path)) and Path(path).suffix.lower() in HEIF_SUFFIXES
    info = from_photo.embedded_of(photo)
    return Image.fromarray(to_uint8(photo.rgb)), heif or info is not None, info.format_name if info else None


def draw_marker(rgb: np.ndarray, x: int, y: int) -> np.ndarray:
    """A copy of a uint8 RGB image with a focus marker (ring, cross ticks, dot) at pixel (x, y).

    The marker scales with the image so it stays visible when the browser shows it downscaled.
    """
    import cv2

    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    r = max(6, round(0.02 * max(h, w)))
    t = max(1, round(r / 7))
    x, y = int(x), int(y)
    for colour, thickness in (((0, 0, 0), t + 2), ((255, 170, 0), t)):
        cv2.circle(out, (x, y), r, colour, thickness, cv2.LINE_AA)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            cv2.line(out, (x + dx * r // 2, y + dy * r // 2), (x + dx * (r + r // 2), y + dy * (r + r // 2)),
                     colour, thickness, cv2.LINE_AA)
    cv2.circle(out, (x, y), max(1, t), (255, 170, 0), -1, cv2.LINE_AA)
    return out


def error_status(message: str) -> str:
    """The status line after a failed request: the reason, and that the images are older."""
    return (f"⚠ **Not rendered:** {message}  \nAnything shown below is from an earlier request.")


def disparity_view(result: RenderResult) -> np.ndarray:
    """Colourised disparity (near = warm) with the in-focus region outlined and the focus marked."""
    view = to_uint8(colourise_disparity(result.disparity, result.in_focus))
    if result.focus_point is not None:
        view = draw_marker(view, *result.focus_point)
    return view


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def note_lines(messages: Sequence[str]) -> list[str]:
    """One line per distinct message, warnings flagged (by the note's severity, not its words).

    Messages are plain text that name paths such as ``~/.cache/...``: a tilde is escaped so that the
    status Markdown does not strike the text between two of them through.
    """
    seen: list[str] = []
    for message in messages:
        if message not in seen:
            seen.append(message)
    return [("⚠ " if is_warning(m) else "· ") + m.replace("~", "\\~") for m in seen]


def status_markdown(results: Sequence[RenderResult], table: BackendTable | None = None,
                    device: str | None = None, request_s: float | None = None,
                    notes: Sequence[str] = ()) -> str:
    """One status block: depth source, focus, backend and device, timings, warnings.

    ``request_s`` is the handler's wall time for the whole request (decoding, any low-quality
    simulation, every backend, writing the images), what the user waited for once the request left
    the queue; the per-backend times are the core's (depth + render of that backend).
    """
    first = results[0]
    lines = []
    # Show an uploaded map by its file name, not Gradio's temporary path.
    source = first.depth_source
    if source.startswith("supplied"):
        source = re.sub(r"\(([^()]*[/\\])([^/\\()]+)\)", r"(\2)", source)
    depth = source + (" ⚠" if first.approximate_depth else "")
    lines.append(f"**Depth:** {depth} ({seconds(first.timings.get('depth', 0.0))})")
    from_camera = (first.embedded_depth or {}).get("focus_used")
    if first.focus_point is not None:
        focus = f"pixel ({first.focus_point[0]}, {first.focus_point[1]})"
        if from_camera:
            focus = f"from the photo ({first.embedded_depth.get('focus_source')}), {focus} (click to choose another)"
    elif from_camera:
        focus = "from the photo (its focus distance; click to choose another)"
    else:
        focus = focus_words(first)  # automatic (which rule), or the subject's mask
    lines.append(f"**Focus:** {focus}, focal-plane disparity {first.focus_disparity:.3f} · "
                 f"**K** = {first.settings.k:g} · in focus: {100 * first.in_focus.mean():.0f} % of the image")
    table = table or {}
    for result in results:
        if result.backend == "classical":
            where = "CPU"
        else:
            note = table.get(result.backend, (Availability(True, ""), ""))[0].reason
            where = f"device {device or 'auto'}" + (f" ({note})" if note else "")
        lines.append(f"**Backend:** {result.backend} on {where} — render "
                     f"{seconds(result.timings.get('render', 0.0))}, core total "
                     f"{seconds(result.timings.get('total', 0.0))}")
    if request_s is not None:
        lines.append(f"**Time:** {seconds(request_s)} for this request (decoding, rendering and writing the "
                     "images; not counting the wait in the queue or the download)")
    lines += note_lines([m for result in results for m in result.messages] + list(notes))
    return "  \n".join(lines)


def sweep_status(result: Any, request_s: float | None = None, download: str | None = None) -> str:
    """The sweep panel's status: what was swept, with which backend, how long, and its notes.

    ``request_s``: the handler's wall time (rendering every frame and writing the previews and the
    download); without it, the core's rendering time.
    """
    swept = (f"K {result.values[0]:g} → {result.values[-1]:g}" if result.kind == "aperture"
             else f"focal-plane disparity {result.values[0]:.2f} → {result.values[-1]:.2f} at K = {result.k[0]:g}")
    if result.k_multiples is not None:  # K = multiple × the base K of the K slider
        base = next((k / m for k, m in zip(result.k, result.k_multiples) if m), None)
        swept = (", ".join(f"{m:g}×" for m in result.k_multiples)
                 + (f" the base K {base:g}" if base is not None else " the base K")
                 + " = K " + ", ".join(f"{k:g}" for k in result.k))
    took = (f"{seconds(request_s)} for this request (rendering {seconds(result.seconds)}, the rest writing "
            "the files; not counting the wait in the queue)" if request_s is not None else seconds(result.seconds))
    fmt = f" · download: {Path(download).suffix[1:].upper()} at full resolution" if download else ""
    lines = [f"**{result.kind.capitalize()} sweep:** {len(result.frames)} frames, {swept} · "
             f"{result.backend} · {took}{fmt}",
             f"**Depth:** {result.depth_source}" + (" ⚠" if result.approximate_depth else "")]
    return "  \n".join(lines + note_lines(result.messages))


def startup_status(depth: tuple[bool, str], table: BackendTable) -> str:
    """What the app can do right now (shown before the first render)."""
    ok, sentence = depth
    lines = ["Upload a photo or pick an example, then **click on it** to choose what stays sharp. "
             "Until you click, the focus is automatic (the nearest large region).",
             f"✓ {sentence}" if ok else f"⚠ {sentence}"]
    missing = [name for name, (status, _) in table.items() if not status.ok]
    if missing:
        lines.append(f"✗ Not available here: {', '.join(missing)} (why: see *Advanced*).")
    return "  \n".join(lines)


def backend_notes(table: BackendTable) -> str:
    """Markdown list of every backend with its state (unavailable ones explain why)."""
    lines = []
    for name, (status, label) in table.items():
        mark = "✓" if status.ok else "✗"
        lines.append(f"{mark} **{name}** — {label if label != name else ''}"
                     f"{' · ' if label != name and status.reason else ''}{status.reason}")
    return "\n".join(f"- {line}" for line in lines)


def backend_choices(table: BackendTable) -> list[tuple[str, str]]:
    """(menu label, name) of the runnable backends; the label carries device and speed notes."""
    return [(f"{label} ({status.summary})" if status.summary else label, name)
            for name, (status, label) in table.items() if status.ok]


MODELS_MARKDOWN_HEAD = """
| Component | Source (override) | Licence | Here |
|---|---|---|---|
| Classical lens blur | built in, no weights | Apache-2.0 (this project) | ✓ ready |
"""
MODELS_MARKDOWN_TAIL = """| MagicBokeh LoRA | `LinxiaoShi/Magicbokeh` (`--checkpoint`, `MAGICBOKEH_CHECKPOINT`) | no licence file published by the authors | see *Advanced* |
| Stable Diffusion 2.1-base | `Manojb/stable-diffusion-2-1-base` mirror (`--base`, `MAGICBOKEH_BASE`) | CreativeML Open RAIL++-M | see *Advanced* |

The depth source is chosen under *Advanced* (Automatic: the depth map a phone portrait carries —
iPhone HEIC, Google Camera GDepth or Dynamic Depth — when the photo has one, else DA depth on a GPU
when its weights are present, else Depth Anything V2 Small; `--depth-model` /
`MAGICBOKEH_DEPTH_MODEL` set the automatic model). Base, Large and DA depth are for non-commercial use. Without network or cached weights the
app falls back to approximate depth (subject cut-out plus ground-plane ramp) and the classical
renderer, and says so in the status line. Uploaded photos are processed in memory and generated
files are deleted after an hour.
"""


def models_markdown() -> str:
    """The "Models and licences" panel: every component, its licence and whether it is ready here."""
    return MODELS_MARKDOWN_HEAD + app_support.depth_models_markdown() + "\n" + MODELS_MARKDOWN_TAIL
