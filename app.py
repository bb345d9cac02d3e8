"""MagicBokeh Gradio demo: click a photo to choose what stays sharp, pick a blur strength K.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--backend classical]
                  [--depth-model ID|DIR] [--base ID|DIR] [--checkpoint FILE|ID] [--device auto|cpu|cuda]

This module only wires the UI: every computation goes through :mod:`magicbokeh`
(:func:`magicbokeh.pipeline.render`). Handlers are plain module-level functions so the tests can
call them directly; ``demo`` is built at import and launched under ``__main__``.

Model sources and the device come from the flags above or from the environment variables
``MAGICBOKEH_DEPTH_MODEL``, ``MAGICBOKEH_BASE``, ``MAGICBOKEH_CHECKPOINT`` and
``MAGICBOKEH_DEVICE`` (flags win). Nothing is downloaded at start-up: with no network the app
starts in seconds, renders with the weight-free classical backend and approximate depth, and
says so in the status line.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np
from PIL import Image

from magicbokeh import zerogpu  # noqa: I001 - first magicbokeh import: imports spaces before torch
from magicbokeh import app_support, pipeline, processing, warmup
from magicbokeh import sweep as sweep_core
from magicbokeh.backends import Availability, backend_names, get_backend
from magicbokeh.depth import DEPTH_MODEL_ENV, depth_status
from magicbokeh.errors import MagicBokehError
from magicbokeh.notes import is_warning
from magicbokeh.images import colourise_disparity, content_key, save_png, to_uint8, upright_pil
from magicbokeh.settings import BLADES_RANGE, FOCAL_RANGE_MAX, K_DEFAULT, K_RANGE
from magicbokeh.sweep import MIN_FRAMES

logger = logging.getLogger("magicbokeh.app")
# Examples without a disparity map pass None on purpose; Gradio warns about any None at start-up.
warnings.filterwarnings("ignore", message="Examples will be cached but not all", category=UserWarning)

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"

#: Model sources and device: flag > environment variable > the backend's own default.
SOURCE_ENV = {
    "depth_model": DEPTH_MODEL_ENV,  # MAGICBOKEH_DEPTH_MODEL
    "base": "MAGICBOKEH_BASE",
    "checkpoint": "MAGICBOKEH_CHECKPOINT",
    "device": "MAGICBOKEH_DEVICE",
}
#: Upload limit (Gradio rejects larger files before they reach a handler).
MAX_FILE_SIZE = "50mb"
#: Events that run a backend share one pool of workers. Classical renders run up to
#: RENDER_CONCURRENCY at once; GPU work (MagicBokeh) runs one request at a time per device
#: (magicbokeh.zerogpu.GPU_SLOT; on ZeroGPU the scheduler), so a diffusion render never blocks them.
RENDER_CONCURRENCY_ID = "render"
RENDER_CONCURRENCY = int(os.environ.get("MAGICBOKEH_RENDER_CONCURRENCY", "4"))
#: Waiting requests kept in the queue (passed explicitly: with SPACES_ZERO_GPU set, Gradio
#: would otherwise use max_size=1).
QUEUE_MAX_SIZE = 32
#: Processing size menu (long side); "auto" = the backend's default, "original" = no downscale.
PROCESSING_CHOICES = [("Automatic (MagicBokeh 1600 px, classical 3072 px)", "auto"), ("1024 px", "1024"),
                      ("1600 px", "1600"), ("2048 px", "2048"), ("3072 px", "3072"),
                      ("Original size", "original")]
DISPARITY_FILE_TYPES = [".png", ".npy", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp"]
_OUTPUT_DIR = Path(tempfile.gettempdir()) / "magicbokeh-app"
_OUTPUT_MAX_AGE_S = 3600.0
#: Most frames the app's sweep slider offers (the CLI allows more).
SWEEP_MAX_FRAMES_UI = 24


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def model_sources() -> dict[str, str | None]:
    """The configured model sources and device (``None`` = the backend's default)."""
    return {key: (os.environ.get(env) or None) for key, env in SOURCE_ENV.items()}


def configure(
    *,
    depth_model: str | None = None,
    base: str | None = None,
    checkpoint: str | None = None,
    device: str | None = None,
) -> None:
    """Apply command-line model sources: they override the environment for this process."""
    for key, value in (("depth_model", depth_model), ("base", base), ("checkpoint", checkpoint),
                       ("device", device)):
        if value:
            os.environ[SOURCE_ENV[key]] = value


def backend_options(backend: str) -> dict[str, Any]:
    """Options handed to a backend: the model sources and device for the diffusion backends."""
    if backend == "classical":
        return {}
    sources = model_sources()
    return {key: sources[key] for key in ("base", "checkpoint", "device") if sources[key]}


def backend_table() -> dict[str, tuple[Availability, str]]:
    """name -> (availability, menu label) for every registered backend; never raises.

    A backend whose module is missing or half-written is reported as unavailable with the reason,
    so the demo still starts.
    """
    table: dict[str, tuple[Availability, str]] = {}
    for name in backend_names():
        label = name
        try:
            backend = get_backend(name)
            label = backend.label or name
            status = backend.availability(backend_options(name))
        except MagicBokehError as exc:
            status = Availability(False, str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken backend must not take the app down
            status = Availability(False, f"failed to load ({type(exc).__name__}: {exc})")
        table[name] = (status, label)
    return table


# --------------------------------------------------------------------------------------------
# Helpers (pure functions on arrays; no Gradio state)
# --------------------------------------------------------------------------------------------


def upright(image: Any) -> Any:
    """The photo as displayed: EXIF orientation applied (a no-op for Gradio's own uploads).

    Anything that is not a PIL image (a path, an array) is returned unchanged: the core's
    ``load_photo`` applies the orientation itself.
    """
    if not isinstance(image, Image.Image):
        return image
    return upright_pil(image)[0]


def image_key(image: Image.Image) -> str:
    """Content hash of an image's RGB pixels (identifies the copy the browser displays)."""
    return content_key(np.asarray(image.convert("RGB")))


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


def _focus(focus_x: float | None, focus_y: float | None, parity: bool = False) -> pipeline.Focus:
    """Focus.point for a clicked or typed pixel, Focus.auto() when neither is set."""
    missing_x = focus_x is None or (isinstance(focus_x, float) and np.isnan(focus_x))
    missing_y = focus_y is None or (isinstance(focus_y, float) and np.isnan(focus_y))
    if missing_x and missing_y:
        return pipeline.Focus.auto()
    if missing_x or missing_y:
        raise MagicBokehError("set both focus x and focus y (or clear both for automatic focus).")
    return pipeline.Focus.point(focus_x, focus_y, parity=bool(parity))


def _settings(backend: str, k: float, focal_range: float, aperture: str, blades: float,
              rotation_deg: float, highlight_boost: bool) -> pipeline.RenderSettings:
    if k is None:
        raise MagicBokehError("blur strength K must be a number in [0, 32].")
    return pipeline.RenderSettings(
        k=float(k),
        backend=backend,
        focal_range=float(focal_range or 0.0),
        aperture=aperture or "circle",
        blades=int(blades if blades is not None else 6),
        rotation_deg=float(rotation_deg or 0.0),
        highlight_boost=bool(highlight_boost),
        backend_options=backend_options(backend),
    )


def _disparity_path(disparity_map: Any) -> str | None:
    if disparity_map is None or disparity_map == "":
        return None
    if isinstance(disparity_map, dict):  # FileData-like payload
        disparity_map = disparity_map.get("path")
    return str(disparity_map)


def _progress_adapter(progress: Any, start: float, span: float, label: str):
    """Core ``progress(fraction, stage)`` -> ``gr.Progress`` over [start, start + span]."""
    def callback(fraction: float, stage: str) -> None:
        progress(start + span * min(max(float(fraction), 0.0), 1.0), desc=f"{label}: {stage}")
    return callback


def _new_output_dir() -> Path:
    """A fresh folder for this render's PNG downloads; folders older than an hour are removed."""
    _OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in _OUTPUT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > _OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=_OUTPUT_DIR))


def disparity_view(result: pipeline.RenderResult) -> np.ndarray:
    """Colourised disparity (near = warm) with the in-focus region outlined and the focus marked."""
    view = to_uint8(colourise_disparity(result.disparity, result.in_focus))
    if result.focus_point is not None:
        view = draw_marker(view, *result.focus_point)
    return view


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def status_markdown(results: Sequence[pipeline.RenderResult], table: dict | None = None) -> str:
    """One status block: depth source, focus, backend and device, timings, warnings."""
    first = results[0]
    lines = []
    # Show an uploaded map by its file name, not Gradio's temporary path.
    source = first.depth_source
    if source.startswith("supplied"):
        source = re.sub(r"\(([^()]*[/\\])([^/\\()]+)\)", r"(\2)", source)
    depth = source + (" ⚠" if first.approximate_depth else "")
    lines.append(f"**Depth:** {depth} ({_seconds(first.timings.get('depth', 0.0))})")
    if first.focus_point is not None:
        focus = f"pixel ({first.focus_point[0]}, {first.focus_point[1]})"
    else:
        focus = "automatic — nearest large region (click the photo to choose)"
    lines.append(f"**Focus:** {focus}, focal-plane disparity {first.focus_disparity:.3f} · "
                 f"**K** = {first.settings.k:g} · in focus: {100 * first.in_focus.mean():.0f} % of the image")
    table = table or {}
    sources = model_sources()
    for result in results:
        if result.backend == "classical":
            device = "CPU"
        else:
            note = table.get(result.backend, (Availability(True, ""), ""))[0].reason
            device = sources["device"] or "auto"
            device = f"device {device}" + (f" ({note})" if note else "")
        lines.append(f"**Backend:** {result.backend} on {device} — render "
                     f"{_seconds(result.timings.get('render', 0.0))}, total "
                     f"{_seconds(result.timings.get('total', 0.0))}")
    notes: list[str] = []
    for result in results:
        for message in result.messages:
            if message not in notes:
                notes.append(message)
    for message in notes:
        lines.append(("⚠ " if is_warning(message) else "· ") + message)
    return "  \n".join(lines)


def startup_status() -> str:
    """What the app can do right now (shown before the first render)."""
    ok, sentence = depth_status()
    lines = ["Upload a photo or pick an example, then **click on it** to choose what stays sharp. "
             "Until you click, the focus is automatic (the nearest large region).",
             f"✓ {sentence}" if ok else f"⚠ {sentence}"]
    missing = [name for name, (status, _) in _BACKENDS.items() if not status.ok]
    if missing:
        lines.append(f"✗ Not available here: {', '.join(missing)} (why: see *Advanced*).")
    return "  \n".join(lines)


def backend_notes(table: dict[str, tuple[Availability, str]]) -> str:
    """Markdown list of every backend with its state (unavailable ones explain why)."""
    lines = []
    for name, (status, label) in table.items():
        mark = "✓" if status.ok else "✗"
        lines.append(f"{mark} **{name}** — {label if label != name else ''}"
                     f"{' · ' if label != name and status.reason else ''}{status.reason}")
    return "\n".join(f"- {line}" for line in lines)


# --------------------------------------------------------------------------------------------
# Rendering (shared by the UI, the examples and the API)
# --------------------------------------------------------------------------------------------


def _render_backends(
    original: Image.Image,
    focus_x: float | None,
    focus_y: float | None,
    k: float,
    backends: Sequence[str],
    disparity_map: Any,
    disparity_is_depth: bool,
    focal_range: float,
    aperture: str,
    blades: float,
    rotation_deg: float,
    highlight_boost: bool,
    progress: Any,
    focus_parity: bool = False,
    depth_model: str = "auto",
    simulate_lq: bool = False,
    lq_preset: str = "realesrgan",
    lq_seed: float | None = 0,
    max_side: Any = "auto",
    match_input_size: bool = True,
) -> list[pipeline.RenderResult]:
    """Render one photo with each backend (depth is computed once and cached by the core).

    GPU backends make one ZeroGPU call each (depth and diffusion together); K is in pixels of the
    input photo, so the blur looks the same at every processing size.
    """
    if not backends:
        raise MagicBokehError("select at least one backend.")
    focus = _focus(focus_x, focus_y, focus_parity)
    depth = app_support.depth_spec(depth_model, _disparity_path(disparity_map))
    source = _source_photo(original, simulate_lq, lq_preset, lq_seed, progress)
    results = []
    span = 1.0 / len(backends)
    for i, backend in enumerate(backends):
        settings = _settings(backend, k, focal_range, aperture, blades, rotation_deg, highlight_boost)
        progress(i * span, desc=f"{backend}: starting")
        request = pipeline.RenderRequest(
            source,
            depth=depth,
            depth_is_depth=bool(disparity_is_depth),
            focus=focus,
            settings=settings,
            max_side=processing_size(max_side, backend),
            match_input_size=bool(match_input_size) if match_input_size is not None else True,
            k_units="input",
        )
        results.append(zerogpu.render_request(request, _progress_adapter(progress, i * span, span, backend)))
    progress(1.0, desc="encoding PNG")
    return results


def processing_size(choice: Any, backend: str) -> int | None:
    """The long side (px) to process at: "auto"/None = the backend's default, "original"/0 = none."""
    if choice is None or choice == "" or choice == "auto":
        return processing.default_max_side(backend)
    if choice == "original":
        return None
    return processing.check_max_side(choice)


def _source_photo(original: Any, simulate_lq: bool, lq_preset: str | None, lq_seed: float | None,
                  progress: Any) -> Any:
    """The photo to render: the upload itself, or its simulated low-quality capture."""
    if not simulate_lq:
        return original
    progress(0.0, desc="simulating a low-quality capture")
    return app_support.simulate_low_quality(original, preset=lq_preset or "realesrgan", seed=lq_seed)


def _save_results(results: Sequence[pipeline.RenderResult]) -> list[str]:
    folder = _new_output_dir()
    paths = []
    for result in results:
        name = f"magicbokeh_K{result.settings.k:g}_{result.backend}.png"
        paths.append(str(save_png(folder / name, result.image)))
    return paths


def _raise_for_ui(exc: BaseException) -> None:
    if isinstance(exc, MagicBokehError):
        raise gr.Error(str(exc), title="Cannot render", print_exception=False) from None
    if isinstance(exc, MemoryError):
        raise gr.Error("out of memory; try a smaller photo.", title="Cannot render",
                       print_exception=False) from None
    raise exc


def render_ui(
    image: Image.Image | None,
    state: dict | None,
    focus_x: float | None,
    focus_y: float | None,
    k: float,
    backends: list[str],
    disparity_map: str | None,
    disparity_is_depth: bool,
    focal_range: float,
    aperture: str,
    blades: float,
    rotation_deg: float,
    highlight_boost: bool,
    focus_parity: bool = False,
    depth_model: str = "auto",
    simulate_lq: bool = False,
    lq_preset: str = "realesrgan",
    lq_seed: float | None = 0,
    max_side: Any = "auto",
    match_input_size: bool = True,
    progress: gr.Progress = gr.Progress(),
):
    """The Render button: before/after, comparison gallery, disparity view, status, PNGs, details.

    With ``simulate_lq`` the "before" image is the simulated low-quality capture that was rendered.
    """
    original = resolve_original(image, state)
    if original is None:
        raise gr.Error("Upload a photo first (or pick an example below).", title="No photo",
                       print_exception=False)
    try:
        results = _render_backends(original, focus_x, focus_y, k, backends, disparity_map,
                                   disparity_is_depth, focal_range, aperture, blades, rotation_deg,
                                   highlight_boost, progress, focus_parity, depth_model, simulate_lq,
                                   lq_preset, lq_seed, max_side, match_input_size)
    except Exception as exc:  # noqa: BLE001
        _raise_for_ui(exc)
    first = results[0]
    before = to_uint8(first.photo.rgb)
    if len(results) > 1:
        items = [(before, "input")] + [(to_uint8(r.image), r.backend) for r in results]
        gallery = gr.update(value=items, visible=True, columns=len(items))
        info: dict[str, Any] = {"backends": {r.backend: r.info() for r in results}}
    else:
        gallery = gr.update(value=None, visible=False)
        info = first.info()
    return (
        (before, to_uint8(first.image)),
        gallery,
        disparity_view(first),
        status_markdown(results, _BACKENDS),
        _save_results(results),
        info,
    )


def rerender(image, state, focus_x, focus_y, k, backends, disparity_map, disparity_is_depth,
             focal_range, aperture, blades, rotation_deg, highlight_boost, focus_parity=False,
             depth_model="auto", simulate_lq=False, lq_preset="realesrgan", lq_seed=0,
             max_side="auto", match_input_size=True, progress: gr.Progress = gr.Progress()):
    """Re-render after a slider release or a click; does nothing while there is no photo."""
    if image is None:
        return (gr.skip(),) * 6
    return render_ui(image, state, focus_x, focus_y, k, backends, disparity_map, disparity_is_depth,
                     focal_range, aperture, blades, rotation_deg, highlight_boost, focus_parity,
                     depth_model, simulate_lq, lq_preset, lq_seed, max_side, match_input_size, progress)


def render_example(image, focus_x, focus_y, k, disparity_map, highlight_boost):
    """Examples (cached lazily): the default backend with the example's focus, K and map.

    Returns the same outputs as :func:`render_ui`, except that the comparison gallery is only
    emptied (Gradio's example cache cannot store visibility updates).
    """
    outputs = render_ui(image, None, focus_x, focus_y, k, list(_DEFAULT_BACKENDS)[:1], disparity_map,
                        False, 0.0, "circle", 6, 0.0, highlight_boost)
    return (outputs[0], None) + tuple(outputs[2:])


def render(
    image: Image.Image,
    focus_x: float | None = None,
    focus_y: float | None = None,
    k: float = K_DEFAULT,
    backend: str = "classical",
    disparity_map: str | None = None,
    disparity_is_depth: bool = False,
    focal_range: float = 0.0,
    aperture: str = "circle",
    blades: int = 6,
    rotation_deg: float = 0.0,
    highlight_boost: bool = False,
    focus_parity: bool = False,
    depth_model: str = "auto",
    simulate_lq: bool = False,
    lq_preset: str = "realesrgan",
    lq_seed: int = 0,
    max_side: str = "auto",
    match_input_size: bool = True,
    progress: gr.Progress = gr.Progress(),
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, dict]:
    """Render lens blur (and, with the MagicBokeh backend, restore) one photo.

    Args:
        image: the photo (JPEG, PNG, WebP...); EXIF orientation is applied, so focus coordinates
            refer to the upright image.
        focus_x: column of the pixel to keep sharp, 0 = left edge. Leave both focus_x and focus_y
            empty for automatic focus on the nearest large region.
        focus_y: row of the pixel to keep sharp, 0 = top edge.
        k: blur strength K in [0, 32]; 0 = no blur (restoration only), 32 = strongest.
        backend: renderer: "classical" (weight-free lens blur), "magicbokeh" (one-step diffusion)
            or "two-stage" (MagicBokeh restoration at K=0, then classical blur), when available.
        disparity_map: optional disparity map file (.png 8/16-bit, .npy, any size; 1 = nearest).
            Without it, depth is estimated (Depth Anything V2) or approximated offline.
        disparity_is_depth: the supplied map holds depth (far = large) instead of disparity.
        focal_range: width in disparity units [0, 1] around the focus that stays fully sharp.
        aperture: "circle" or "polygon" bokeh shape.
        blades: number of polygon blades, 3-12.
        rotation_deg: polygon rotation in degrees.
        highlight_boost: brighten out-of-focus highlights so they bloom into bokeh discs.
        focus_parity: focus exactly as the official MagicBokeh demo (the 8-bit disparity of the
            single focus pixel) instead of the median over a 7x7 window.
        depth_model: depth source: "auto" (the best model available here, else approximate),
            "dadepth" (MagicBokeh's degradation-aware ViT-L), "small" (Depth Anything V2 Small,
            Apache-2.0), "base" or "large" (CC-BY-NC-4.0), "approximate" (no model) or "uploaded"
            (the disparity_map file; "auto" also uses it when given). A model whose weights are
            not available here is an error.
        simulate_lq: first degrade the photo into a low-quality capture (4x resolution loss), so
            the restoration can be seen on a clean photo; the "input" image returned is then the
            degraded one.
        lq_preset: "realesrgan" (Real-ESRGAN second-order degradation) or "zoom" (digital zoom).
        lq_seed: whole number >= 0; the same seed gives the same degradation.
        max_side: processing size, the long side in pixels at which the photo is rendered:
            "auto" (MagicBokeh 1600, classical 3072), "original", or a number in [64, 8192].
            K keeps the same visual strength at every processing size.
        match_input_size: resize the result back to the input's size (default true).

    Returns:
        The (input, result) pair at the input's full resolution as PNGs, the colourised disparity
        map (near = warm) with the in-focus region outlined, and a JSON summary (sizes, focus,
        backend, depth source, timings, messages).
    """
    if image is None:
        raise gr.Error("no image given; pass a photo.", title="No photo", print_exception=False)
    try:
        # Decoded by our code (the API input is a plain file): a corrupt upload gets our message.
        photo = processing.decode_upload(image)
        (result,) = _render_backends(photo, focus_x, focus_y, k, [backend], disparity_map,
                                     disparity_is_depth, focal_range, aperture, blades, rotation_deg,
                                     highlight_boost, progress, focus_parity, depth_model, simulate_lq,
                                     lq_preset, lq_seed, max_side, match_input_size)
    except Exception as exc:  # noqa: BLE001
        _raise_for_ui(exc)
    pair = (to_uint8(result.photo.rgb), to_uint8(result.image))
    return pair, disparity_view(result), result.info()


def sweep_ui(
    image: Image.Image | None,
    state: dict | None,
    focus_x: float | None,
    focus_y: float | None,
    k: float,
    backends: list[str],
    disparity_map: str | None,
    disparity_is_depth: bool,
    focal_range: float,
    aperture: str,
    blades: float,
    rotation_deg: float,
    highlight_boost: bool,
    focus_parity: bool,
    depth_model: str,
    simulate_lq: bool,
    lq_preset: str,
    lq_seed: float | None,
    sweep_kind: str,
    sweep_frames: float,
    sweep_k_max: float,
    progress: gr.Progress = gr.Progress(),
):
    """The "Make sweep" button: an animated GIF and a PNG strip of the current photo and settings.

    Aperture sweep: K from 0 to ``sweep_k_max`` at the current focus. Focus sweep: the focal plane
    from the nearest to the farthest at the current K. Uses the first selected backend.
    Returns (GIF path, strip path, both paths for download, a status line).
    """
    original = resolve_original(image, state)
    if original is None:
        raise gr.Error("Upload a photo first (or pick an example below).", title="No photo",
                       print_exception=False)
    try:
        if not backends:
            raise MagicBokehError("select at least one backend.")
        backend = backends[0]
        zerogpu.check_allowed("sweep", backend)
        settings = _settings(backend, k, focal_range, aperture, blades, rotation_deg, highlight_boost)
        depth = app_support.depth_spec(depth_model, _disparity_path(disparity_map))
        source = _source_photo(original, simulate_lq, lq_preset, lq_seed, progress)
        request = pipeline.RenderRequest(source, depth=depth, depth_is_depth=bool(disparity_is_depth),
                                         focus=_focus(focus_x, focus_y, focus_parity), settings=settings)
        result = sweep_core.render_sweep(
            request, kind=sweep_kind, frames=sweep_frames, k_max=sweep_k_max,
            progress=_progress_adapter(progress, 0.0, 0.95, f"{sweep_kind} sweep"),
            render=zerogpu.render_request,
        )
        progress(0.95, desc="writing GIF and PNG strip")
        folder = _new_output_dir()
        stem = f"magicbokeh_{result.kind}_sweep"
        (gif,) = sweep_core.save_sweep(result.frames, folder / f"{stem}.gif")
        (strip,) = sweep_core.save_sweep(result.frames, folder / f"{stem}.png")
    except Exception as exc:  # noqa: BLE001
        _raise_for_ui(exc)
    swept = (f"K {result.values[0]:g} → {result.values[-1]:g}" if result.kind == "aperture"
             else f"focal-plane disparity {result.values[0]:.2f} → {result.values[-1]:.2f} at K = {result.k[0]:g}")
    lines = [f"**{result.kind.capitalize()} sweep:** {len(result.frames)} frames, {swept} · "
             f"{result.backend} · {_seconds(result.seconds)}",
             f"**Depth:** {result.depth_source}" + (" ⚠" if result.approximate_depth else "")]
    lines += [("⚠ " if is_warning(m) else "· ") + m for m in result.messages]
    return str(gif), str(strip), [str(gif), str(strip)], "  \n".join(lines)


# --------------------------------------------------------------------------------------------
# Focus interaction (private events)
# --------------------------------------------------------------------------------------------


def on_upload(image: Image.Image | None):
    """A new photo: remember the upright original, reset the focus to automatic."""
    if image is None:
        return None, None, None, startup_status()
    image = upright(image)
    w, h = image.size
    state = {"original": image, "display_key": image_key(image)}
    return state, None, None, (f"Photo loaded ({w}×{h}). **Click on it** to choose the focus point; "
                               "until then the focus is automatic.")


def on_select(image: Image.Image | None, state: dict | None, evt: gr.SelectData):
    """A click on the photo: focus there, and show a marker at the clicked pixel.

    ``evt.index`` is (x, y) in the pixel grid of the file the browser shows, which is always the
    full-resolution upright original or our marked copy of it (same size), so it maps 1:1 to the
    original's pixels.
    """
    original = resolve_original(image, state)
    if original is None or evt is None or evt.index is None:
        raise gr.Error("Upload a photo first, then click on it.", title="No photo",
                       print_exception=False)
    w, h = original.size
    x = int(min(max(round(float(evt.index[0])), 0), w - 1))
    y = int(min(max(round(float(evt.index[1])), 0), h - 1))
    marked = draw_marker(np.asarray(original.convert("RGB")), x, y)
    new_state = {"original": original, "display_key": content_key(marked)}
    return marked, new_state, x, y


def reset_focus():
    """Page load: an empty focus readout (Gradio shows and sends 0 for a Number created as None)."""
    return None, None


def on_map_upload() -> str:
    """A disparity map was uploaded: select it as the depth source."""
    return app_support.DEPTH_UPLOADED


def on_map_clear() -> str:
    """The disparity map was removed: back to automatic depth."""
    return app_support.DEPTH_AUTO


def on_clear():
    """The photo was removed: forget it and the focus point."""
    return None, None, None, startup_status()


def clear_focus(image: Image.Image | None, state: dict | None):
    """Back to automatic focus: remove the marker and empty the focus readout."""
    original = resolve_original(image, state)
    if original is None:
        return gr.skip(), None, None, None
    return original, {"original": original, "display_key": image_key(original)}, None, None


# --------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------

#: (file, focus x, focus y, K, disparity map or None, highlight boost, label)
EXAMPLES = [
    ("synthetic_scene.png", 218, 470, 24, "synthetic_scene_disparity.png", True,
     "Synthetic scene, true depth: focus on the red sphere"),
    ("synthetic_scene.png", 655, 350, 20, "synthetic_scene_disparity.png", True,
     "Synthetic scene, true depth: focus on the far sphere"),
    ("astronaut.jpg", 210, 150, 20, None, False, "Astronaut (NASA, public domain)"),
    ("coffee.jpg", 280, 140, 24, None, False, "Coffee (CC0)"),
    ("chelsea.jpg", 225, 150, 16, None, False, "Chelsea the cat (CC0)"),
    ("rocket.jpg", 320, 280, 28, None, True, "Rocket (SpaceX, public domain)"),
]


def example_rows() -> tuple[list[list[Any]], list[str]]:
    """Rows for gr.Examples (only those whose files exist) and their labels."""
    rows, labels = [], []
    for name, x, y, k, disparity, boost, label in EXAMPLES:
        path = EXAMPLES_DIR / name
        disp = EXAMPLES_DIR / disparity if disparity else None
        if not path.is_file() or (disp is not None and not disp.is_file()):
            continue
        rows.append([str(path), x, y, k, str(disp) if disp else None, boost])
        labels.append(label)
    return rows, labels


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

THEME = gr.themes.Soft(
    primary_hue="orange",
    secondary_hue="blue",
    neutral_hue="slate",
    # System fonts: no font download, so the page renders the same offline.
    font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)
CSS = """
#title h1 { margin-bottom: 0.2rem; }
#title p { margin-top: 0; opacity: 0.85; }
#status { font-size: 0.92rem; }
#input-image img { cursor: crosshair; }
.focus-row { align-items: end; }
"""

DESCRIPTION = """
# MagicBokeh — click to focus, slide to blur
Restore a low-quality photo and render photorealistic lens blur from a disparity map, a focus point
and a blur strength **K** ([MagicBokeh, CVPR 2026](https://github.com/LinxiaoShi/MagicBokeh)).
**Click the photo** where it should stay sharp, then adjust **K**; the result re-renders when you let
go of the slider. The classical backend needs no weights and runs on any CPU.
"""

_BACKENDS: dict[str, tuple[Availability, str]] = {}
_DEFAULT_BACKENDS: list[str] = ["classical"]


def backend_choices(table: dict[str, tuple[Availability, str]]) -> list[tuple[str, str]]:
    """(menu label, name) of the runnable backends; the label carries device and speed notes."""
    return [(f"{label} ({status.summary})" if status.summary else label, name)
            for name, (status, label) in table.items() if status.ok]


def build_demo(default_backends: Sequence[str] | None = None) -> gr.Blocks:
    """Build the Blocks app (backend availability is read now, without loading any weights)."""
    global _BACKENDS, _DEFAULT_BACKENDS
    _BACKENDS = backend_table()
    runnable = [name for name, (status, _) in _BACKENDS.items() if status.ok]
    wanted = [b for b in (default_backends or ["classical"]) if b in runnable]
    _DEFAULT_BACKENDS = wanted or runnable[:1] or ["classical"]
    choices = backend_choices(_BACKENDS)

    with gr.Blocks(title="MagicBokeh — click to focus, slide to blur",
                   delete_cache=(3600, 3600)) as demo:
        state = gr.State(None)
        gr.Markdown(DESCRIPTION, elem_id="title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=340):
                input_image = gr.Image(
                    label="Photo — click to set the focus point",
                    type="pil",
                    format="png",
                    sources=["upload", "clipboard"],
                    height=420,
                    elem_id="input-image",
                )
                with gr.Row(elem_classes="focus-row"):
                    focus_x = gr.Number(label="Focus x (px)", value=None, precision=0,
                                        elem_id="focus-x", min_width=90)
                    focus_y = gr.Number(label="Focus y (px)", value=None, precision=0,
                                        elem_id="focus-y", min_width=90)
                    auto_btn = gr.Button("Auto focus", size="md", variant="secondary",
                                         elem_id="auto-focus", min_width=90)
                k_slider = gr.Slider(
                    K_RANGE[0], K_RANGE[1], value=K_DEFAULT, step=0.5,
                    label="Blur strength K",
                    info="0 = no blur, restoration only · 32 = strongest (the paper's setting) · in pixels "
                         "of your photo: a smaller processing size gets K × its scale, so the blur looks the same",
                    elem_id="k-slider",
                )
                backends_box = gr.CheckboxGroup(
                    choices=choices, value=list(_DEFAULT_BACKENDS),
                    label="Backend — tick several to compare side by side",
                    elem_id="backends",
                )
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    focal_range = gr.Slider(0.0, FOCAL_RANGE_MAX, value=0.0, step=0.01,
                                            label="Focal range",
                                            info="depth band around the focus kept fully sharp "
                                                 "(disparity units, 0 = only the focal plane)")
                    with gr.Row():
                        aperture = gr.Radio(["circle", "polygon"], value="circle",
                                            label="Aperture shape")
                        highlight = gr.Checkbox(value=False, label="Highlight boost",
                                                info="bright spots bloom into bokeh discs")
                    with gr.Row():
                        blades = gr.Slider(BLADES_RANGE[0], BLADES_RANGE[1], value=6, step=1,
                                           label="Blades (polygon)")
                        rotation = gr.Slider(0, 180, value=0, step=1, label="Rotation (°)")
                    disparity_file = gr.File(
                        label="Disparity map (optional: .png 8/16-bit or .npy, 1 = near)",
                        file_types=DISPARITY_FILE_TYPES, type="filepath", height=130,
                        elem_id="disparity-file",
                    )
                    is_depth = gr.Checkbox(value=False, label="The map is depth (far = large)")
                    depth_model = gr.Dropdown(
                        choices=app_support.depth_menu(), value=app_support.DEPTH_AUTO,
                        label="Depth source (with licence)",
                        info="Automatic says in the status line which model ran and why; a model that "
                             "is not available here is refused, Automatic falls back to approximate",
                        elem_id="depth-model",
                    )
                    with gr.Group():
                        simulate_lq = gr.Checkbox(
                            value=False, label="Simulate a low-quality capture",
                            info="degrade the photo (4× resolution loss) before rendering, to see the "
                                 "restoration on a clean photo; “before” then shows the degraded photo",
                            elem_id="simulate-lq",
                        )
                        with gr.Row():
                            lq_preset = gr.Radio([("Real-ESRGAN (blur, resize, noise, JPEG)", "realesrgan"),
                                                  ("Digital zoom", "zoom")],
                                                 value="realesrgan", label="Degradation", elem_id="lq-preset")
                            lq_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed",
                                                info="same seed, same degradation", elem_id="lq-seed",
                                                min_width=90)
                    parity = gr.Checkbox(value=False, label="Official focus rule",
                                         info="use the 8-bit disparity of the single clicked pixel, as "
                                              "the MagicBokeh demo (default: median of a 7x7 window)")
                    with gr.Row():
                        processing_size_box = gr.Dropdown(
                            choices=PROCESSING_CHOICES, value="auto", label="Processing size (long side)",
                            info="large photos are rendered at this size; the blur looks the same "
                                 "(type any long side from 64 to 8192 px)",
                            allow_custom_value=True, elem_id="processing-size")
                        match_size = gr.Checkbox(value=True, label="Match input size",
                                                 info="resize the result back to the photo's size",
                                                 elem_id="match-input-size")
                    gr.Markdown("**Backends on this machine**\n\n" + backend_notes(_BACKENDS))
                render_btn = gr.Button("Render", variant="primary", size="lg", elem_id="render")
            with gr.Column(scale=7, min_width=400):
                slider = gr.ImageSlider(label="Before / after", type="numpy",
                                        format="png", max_height=560, elem_id="result-slider")
                gallery = gr.Gallery(label="Backends side by side", format="png", visible=False,
                                     height=300, elem_id="compare-gallery", object_fit="contain")
                status = gr.Markdown(startup_status(), elem_id="status")
                with gr.Row(equal_height=False):
                    depth_view = gr.Image(label="Disparity, focus outlined",
                                          type="numpy", format="png", interactive=False, height=260,
                                          elem_id="disparity-view")
                    download = gr.File(label="Full-resolution PNG", file_count="multiple",
                                       interactive=False, height=120, elem_id="download")
                with gr.Accordion("Sweep", open=False, elem_id="sweep"):
                    with gr.Row():
                        sweep_kind = gr.Radio([("Aperture: K from 0 to K max", "aperture"),
                                               ("Focus: near → far at the current K", "focus")],
                                              value="aperture", label="Sweep", elem_id="sweep-kind")
                        sweep_frames = gr.Slider(MIN_FRAMES, SWEEP_MAX_FRAMES_UI, value=8, step=1,
                                                 label="Frames", elem_id="sweep-frames")
                        sweep_k_max = gr.Slider(0.5, K_RANGE[1], value=K_RANGE[1], step=0.5,
                                                label="K max (aperture sweep)", elem_id="sweep-k-max")
                    sweep_btn = gr.Button("Make sweep (GIF + PNG strip)", variant="secondary",
                                          elem_id="make-sweep")
                    sweep_status = gr.Markdown(elem_id="sweep-status")
                    with gr.Row(equal_height=False):
                        sweep_gif = gr.Image(label="Animation (GIF)", type="filepath", interactive=False,
                                             height=260, elem_id="sweep-gif")
                        sweep_strip = gr.Image(label="All frames (PNG strip)", type="filepath",
                                               interactive=False, height=260, elem_id="sweep-strip")
                    sweep_files = gr.File(label="Download the GIF and the strip", file_count="multiple",
                                          interactive=False, height=100, elem_id="sweep-files")
                with gr.Accordion("Details (JSON)", open=False):
                    info_json = gr.JSON(label="Render info", elem_id="info")

        rows, labels = example_rows()
        if rows:
            gr.Examples(
                examples=rows,
                inputs=[input_image, focus_x, focus_y, k_slider, disparity_file, highlight],
                outputs=[slider, gallery, depth_view, status, download, info_json],
                fn=render_example,
                cache_examples=True,
                cache_mode="lazy",
                example_labels=labels,
                label="Examples — each with a preset focus point and K",
                examples_per_page=8,
            )
        with gr.Accordion("Models and licences", open=False):
            gr.Markdown(models_markdown())

        # Hidden input for the API's single `backend` argument.
        api_backend = gr.Dropdown(choices=list(_BACKENDS), value="classical", visible=False,
                                  label="backend")
        api_trigger = gr.Button(visible=False)
        # The API's photo is a plain file, decoded by our code (gr.Image would decode it first and
        # answer a corrupt upload with a generic error).
        api_image = gr.File(label="image", type="filepath", visible=False)

        ui_inputs = [input_image, state, focus_x, focus_y, k_slider, backends_box, disparity_file,
                     is_depth, focal_range, aperture, blades, rotation, highlight, parity, depth_model,
                     simulate_lq, lq_preset, lq_seed]
        ui_outputs = [slider, gallery, depth_view, status, download, info_json]
        render_inputs = ui_inputs + [processing_size_box, match_size]
        render_kwargs = dict(concurrency_id=RENDER_CONCURRENCY_ID, concurrency_limit=RENDER_CONCURRENCY,
                             api_visibility="private")

        demo.load(reset_focus, None, [focus_x, focus_y], api_visibility="private", queue=False)
        input_image.upload(on_upload, [input_image], [state, focus_x, focus_y, status],
                           api_visibility="private", queue=False)
        input_image.clear(on_clear, None, [state, focus_x, focus_y, status],
                          api_visibility="private", queue=False)
        input_image.select(
            on_select, [input_image, state], [input_image, state, focus_x, focus_y],
            api_visibility="private", trigger_mode="always_last",
        ).then(rerender, render_inputs, ui_outputs, trigger_mode="always_last", **render_kwargs)
        auto_btn.click(clear_focus, [input_image, state], [input_image, state, focus_x, focus_y],
                       api_visibility="private").then(rerender, render_inputs, ui_outputs, **render_kwargs)
        render_btn.click(render_ui, render_inputs, ui_outputs, **render_kwargs)
        k_slider.release(rerender, render_inputs, ui_outputs, trigger_mode="always_last", **render_kwargs)
        # An uploaded map selects "Uploaded map"; removing it goes back to Automatic.
        disparity_file.upload(on_map_upload, None, [depth_model], api_visibility="private", queue=False)
        disparity_file.clear(on_map_clear, None, [depth_model], api_visibility="private", queue=False)
        sweep_btn.click(sweep_ui, ui_inputs + [sweep_kind, sweep_frames, sweep_k_max],
                        [sweep_gif, sweep_strip, sweep_files, sweep_status], **render_kwargs)
        api_trigger.click(
            render,
            [api_image, focus_x, focus_y, k_slider, api_backend, disparity_file, is_depth,
             focal_range, aperture, blades, rotation, highlight, parity, depth_model, simulate_lq,
             lq_preset, lq_seed, processing_size_box, match_size],
            [slider, depth_view, info_json],
            api_name="render",
            concurrency_id=RENDER_CONCURRENCY_ID,
            concurrency_limit=RENDER_CONCURRENCY,
        )
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo


MODELS_MARKDOWN_HEAD = """
| Component | Source (override) | Licence | Here |
|---|---|---|---|
| Classical lens blur | built in, no weights | Apache-2.0 (this project) | ✓ ready |
"""
MODELS_MARKDOWN_TAIL = """| MagicBokeh LoRA | `LinxiaoShi/Magicbokeh` (`--checkpoint`, `MAGICBOKEH_CHECKPOINT`) | no licence file published by the authors | see *Advanced* |
| Stable Diffusion 2.1-base | `Manojb/stable-diffusion-2-1-base` mirror (`--base`, `MAGICBOKEH_BASE`) | CreativeML Open RAIL++-M | see *Advanced* |

The depth source is chosen under *Advanced* (Automatic: DA depth on a GPU when its weights are
present, else Depth Anything V2 Small; `--depth-model` / `MAGICBOKEH_DEPTH_MODEL` set the automatic
choice). Base, Large and DA depth are for non-commercial use. Without network or cached weights the
app falls back to approximate depth (subject cut-out plus ground-plane ramp) and the classical
renderer, and says so in the status line. Uploaded photos are processed in memory and generated
files are deleted after an hour.
"""


def models_markdown() -> str:
    """The "Models and licences" panel: every component, its licence and whether it is ready here."""
    return MODELS_MARKDOWN_HEAD + app_support.depth_models_markdown() + "\n" + MODELS_MARKDOWN_TAIL


if zerogpu.zero_gpu_active():
    # ZeroGPU: build the networks and move them to CUDA once, at import (not inside each call).
    for _note in warmup.prepare_models(backend_options("magicbokeh"), model_sources()["depth_model"]):
        logger.info(_note)
demo = build_demo()


# --------------------------------------------------------------------------------------------
# Launch
# --------------------------------------------------------------------------------------------


def mcp_available() -> bool:
    """Whether the ``gradio[mcp]`` extra is installed."""
    return importlib.util.find_spec("mcp") is not None


def launch(app: gr.Blocks | None = None, *, host: str = "127.0.0.1", port: int | None = 7860,
           share: bool = False, mcp: bool | None = None, **kwargs: Any):
    """Launch with the project's theme, limits and (when installed) the MCP server.

    ``mcp=None`` enables the MCP server exactly when the ``gradio[mcp]`` extra is installed.
    Returns what :meth:`gradio.Blocks.launch` returns (app, local URL, share URL).
    """
    app = app or demo
    if mcp is None:
        mcp = mcp_available()
    elif mcp and not mcp_available():
        logger.warning('MCP server requested but the extra is missing: pip install "gradio[mcp]"')
        mcp = False
    if mcp:
        kwargs.setdefault("mcp_server", True)
    return app.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=[str(EXAMPLES_DIR)],
        footer_links=["api", "gradio", "settings"],
        theme=THEME,
        css=CSS,
        **kwargs,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MagicBokeh Gradio demo")
    # Spaces sets GRADIO_SERVER_NAME=0.0.0.0; an explicit server_name would override it.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--backend", default="classical",
                        help="backend(s) selected at start, comma-separated (default classical)")
    parser.add_argument("--depth-model", help="Depth Anything V2 repo id or folder (env MAGICBOKEH_DEPTH_MODEL)")
    parser.add_argument("--base", help="SD2.1-base repo id or folder (env MAGICBOKEH_BASE)")
    parser.add_argument("--checkpoint", help="MagicBokeh lora.pkl path, trained DIR/final folder, or repo id "
                        "(env MAGICBOKEH_CHECKPOINT)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (env MAGICBOKEH_DEVICE)")
    parser.add_argument("--mcp", action=argparse.BooleanOptionalAction, default=None,
                        help="serve the MCP endpoint (default: on when gradio[mcp] is installed)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    global demo
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    configure(depth_model=args.depth_model, base=args.base, checkpoint=args.checkpoint,
              device=args.device)
    selected = [b.strip() for b in args.backend.split(",") if b.strip()] or ["classical"]
    if selected != ["classical"] or any((args.depth_model, args.base, args.checkpoint, args.device)):
        # Rebuild so the default selection and backend availability reflect the flags above.
        demo = build_demo(selected)
    # Say on the console, too, what works here and what is missing (and how to get it).
    ok, sentence = depth_status()
    print(f"{'ready' if ok else 'fallback':>11}  depth: {sentence}")
    for name, (status, _) in _BACKENDS.items():
        print(f"{'ready' if status.ok else 'unavailable':>11}  {name}: {status.reason}")
    if _BACKENDS.get("magicbokeh", (Availability(False),))[0].ok:
        # A machine with its own GPU: load and warm up while the server starts (no-op on CPUs and
        # on ZeroGPU), so the first render is not the slow one.
        threading.Thread(target=lambda: [logger.info(n) for n in warmup.warm_up_at_start(
            backend_options("magicbokeh"), model_sources()["depth_model"])], daemon=True).start()
    launch(demo, host=args.host, port=args.port, share=args.share, mcp=args.mcp)


if __name__ == "__main__":
    main()
