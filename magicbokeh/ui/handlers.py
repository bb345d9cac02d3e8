"""The app's event handlers: each receives one :class:`~magicbokeh.app_settings.AppSettings`.

:class:`Handlers` holds what the handlers share (model sources, the backend table, the default
backend), so nothing is kept in module globals. Every render, sweep and API call goes the one road
into the core: :meth:`AppSettings.request` -> :func:`magicbokeh.zerogpu.render_request` ->
:func:`magicbokeh.pipeline.run` (sweeps: :func:`magicbokeh.sweep.render_sweep` with that router).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
from PIL import Image

from .. import app_support, zerogpu
from .. import sweep as sweep_core
from ..app_settings import AppSettings, ModelSources
from ..backends import Availability, backend_names, get_backend
from ..depth import depth_status, from_photo
from ..errors import MagicBokehError
from ..images import content_key
from ..notes import warning
from ..request import RenderResult
from . import outputs, views

NO_PHOTO = "Upload a photo first (or pick an example below)."
#: Backends that only blur: with them alone, a simulated low-quality capture is not restored.
BLUR_ONLY = ("classical",)
#: A fresh folder for one response's files (see :mod:`magicbokeh.ui.outputs`).
new_output_dir = outputs.new_response_folder


def backend_table(sources: ModelSources) -> dict[str, tuple[Availability, str]]:
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
            status = backend.availability(sources.backend_options(name))
        except MagicBokehError as exc:
            status = Availability(False, str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken backend must not take the app down
            status = Availability(False, f"failed to load ({type(exc).__name__}: {exc})")
        table[name] = (status, label)
    return table


def _no_progress(*_args: Any, **_kwargs: Any) -> None:
    return None


def progress_adapter(progress: Any, start: float, span: float, label: str) -> Callable[[float, str], None]:
    """Core ``progress(fraction, stage)`` -> ``gr.Progress`` over [start, start + span]."""
    def callback(fraction: float, stage: str) -> None:
        progress(start + span * min(max(float(fraction), 0.0), 1.0), desc=f"{label}: {stage}")
    return callback


def raise_for_ui(exc: BaseException) -> None:
    """Our errors (and running out of memory) as a ``gr.Error`` with the core's message."""
    if isinstance(exc, MagicBokehError):
        raise gr.Error(str(exc), title="Cannot render", print_exception=False) from None
    if isinstance(exc, MemoryError):
        raise gr.Error("out of memory; try a smaller photo.", title="Cannot render",
                       print_exception=False) from None
    raise exc


class Handlers:
    """The handlers of one demo, sharing its model sources and backend table."""

    def __init__(self, sources: ModelSources, default_backends: Sequence[str] | None = None) -> None:
        self.sources = sources
        self.table = backend_table(sources)
        runnable = [name for name, (status, _) in self.table.items() if status.ok]
        wanted = [b for b in (default_backends or ["classical"]) if b in runnable]
        self.default_backends = wanted or runnable[:1] or ["classical"]

    # -- texts ----------------------------------------------------------------------------------

    def startup_status(self) -> str:
        """What the app can do right now (shown before the first render)."""
        return views.startup_status(depth_status(self.sources.depth_model), self.table)

    # -- renders --------------------------------------------------------------------------------

    def render_results(self, s: AppSettings, original: Any, progress: Any = _no_progress) -> list[RenderResult]:
        """Render one photo with each selected backend (depth is computed once, cached by the core).

        GPU backends make one ZeroGPU call each (depth and diffusion together); K is in pixels of
        the input photo, so the blur looks the same at every processing size.
        """
        if not s.backends:
            raise MagicBokehError("select at least one backend.")
        s.focus(), s.depth_spec()  # bad focus or depth input fails before any work
        if s.simulate_lq:
            progress(0.0, desc="simulating a low-quality capture")
        source = s.source_photo(original)
        results = []
        span = 1.0 / len(s.backends)
        for i, backend in enumerate(s.backends):
            progress(i * span, desc=f"{backend}: starting")
            request = s.request(source, backend, self.sources)
            results.append(zerogpu.render_request(request, progress_adapter(progress, i * span, span, backend)))
        progress(1.0, desc="encoding PNG")
        return results

    def render(self, s: AppSettings, progress: Any = _no_progress) -> tuple:
        """The Render button: before/after, comparison gallery, disparity view, status, PNGs, details.

        With ``simulate_lq`` the "before" image is the simulated low-quality capture that was rendered.
        Every image is returned as a PNG file of this response's own folder (see
        :mod:`magicbokeh.ui.outputs`); the status line's time is this handler's wall time.
        """
        started = time.perf_counter()
        try:
            original = views.resolve_original(s.image, s.state)
            if original is None:
                raise gr.Error(NO_PHOTO, title="No photo", print_exception=False)
            results = self.render_results(s, views.photo_source(original, s.state), progress)
            first = results[0]
            folder = new_output_dir()
            before = outputs.write_png(folder, "before.png", first.photo.rgb)
            files = [outputs.write_png(folder, f"magicbokeh_K{r.settings.k:g}_{r.backend}.png", r.image)
                     for r in results]
            depth_view = outputs.write_png(folder, "disparity.png", views.disparity_view(first))
        except Exception as exc:  # noqa: BLE001
            raise_for_ui(exc)
        if len(results) > 1:
            items = [(before, "input")] + [(path, r.backend) for path, r in zip(files, results)]
            gallery = gr.update(value=items, visible=True, columns=len(items))
            info: dict[str, Any] = {"backends": {r.backend: r.info() for r in results}}
        else:
            gallery = gr.update(value=None, visible=False)
            info = first.info()
        notes = []
        if s.simulate_lq and all(b in BLUR_ONLY for b in s.backends):
            notes.append(warning(self.lq_not_restored()))
        request_s = time.perf_counter() - started
        info["request_seconds"] = round(request_s, 4)
        status = views.status_markdown(results, self.table, self.sources.device, request_s=request_s, notes=notes)
        return (before, files[0]), gallery, depth_view, status, files, info

    def lq_not_restored(self) -> str:
        """Why a simulated low-quality capture rendered by the classical backend still looks degraded."""
        restoring = [name for name in ("two-stage", "magicbokeh") if name in self.table and self.table[name][0].ok]
        if restoring:
            how = f"tick {' or '.join(restoring)} to restore it"
        else:
            how = "MagicBokeh and two-stage, which restore, are not available here (see *Advanced*)"
        return ("the classical backend only blurs: the simulated low-quality capture is blurred, not "
                f"restored; {how}.")

    def rerender(self, s: AppSettings, progress: Any = _no_progress) -> tuple:
        """Re-render after a slider release or a click; does nothing while there is no photo."""
        if s.image is None:
            return (gr.skip(),) * 6
        return self.render(s, progress)


    def render_example(self, image: Any, focus_x: Any, focus_y: Any, k: Any, disparity_map: Any,
                       highlight_boost: Any) -> tuple:
        """Examples (cached lazily): the default backend with the example's focus, K and map.

        The comparison gallery is only emptied (Gradio's example cache cannot store visibility).
        """
        s = AppSettings(image=image, focus_x=focus_x, focus_y=focus_y, k=k, backends=self.default_backends[:1],
                        disparity_map=disparity_map, highlight_boost=highlight_boost)
        outputs = self.render(s)
        return (outputs[0], None) + tuple(outputs[2:])

    def api_render(self, s: AppSettings, progress: Any = _no_progress) -> tuple:
        """The /render API: (input, result) PNG files, disparity view file, JSON summary (see ``app.render``)."""
        started = time.perf_counter()
        if s.image is None:
            raise gr.Error("no image given; pass a photo.", title="No photo", print_exception=False)
        try:
            # Decoded by our code (the API input is a plain file): a corrupt upload gets our message.
            (result,) = self.render_results(s, from_photo.open_upload(s.image), progress)
            folder = new_output_dir()
            pair = (outputs.write_png(folder, "input.png", result.photo.rgb),
                    outputs.write_png(folder, f"magicbokeh_K{result.settings.k:g}_{result.backend}.png", result.image))
            depth_view = outputs.write_png(folder, "disparity.png", views.disparity_view(result))
        except Exception as exc:  # noqa: BLE001
            raise_for_ui(exc)
        info = result.info()
        info["request_seconds"] = round(time.perf_counter() - started, 4)
        return pair, depth_view, info

    def sweep(self, s: AppSettings, progress: Any = _no_progress) -> tuple:
        """The "Make sweep" button: a light preview and a full-resolution animation to download.

        Uses the first selected backend. Returns (animated preview, contact-sheet preview,
        [full-resolution MP4 or animated WebP], a status line); see :func:`outputs.sweep_files`.
        """
        started = time.perf_counter()
        try:
            original = views.resolve_original(s.image, s.state)
            if original is None:
                raise gr.Error(NO_PHOTO, title="No photo", print_exception=False)
            if not s.backends:
                raise MagicBokehError("select at least one backend.")
            backend = s.backends[0]
            zerogpu.check_allowed("sweep", backend)
            s.render_settings(backend, self.sources), s.depth_spec()
            multiples = s.k_multiples()  # set: frames and K max are not used
            if s.simulate_lq:
                progress(0.0, desc="simulating a low-quality capture")
            request = s.sweep_request(s.source_photo(views.photo_source(original, s.state)), backend, self.sources)
            result = sweep_core.render_sweep(
                request, kind=s.sweep_kind, frames=s.sweep_frames, k_max=s.sweep_k_max, k_multiples=multiples,
                progress=progress_adapter(progress, 0.0, 0.95, f"{s.sweep_kind} sweep"),
                render=zerogpu.render_request,
            )
            progress(0.95, desc="writing the preview and the animation")
            preview, sheet, download = outputs.sweep_files(result.frames, new_output_dir(),
                                                           f"magicbokeh_{result.kind}_sweep")
        except Exception as exc:  # noqa: BLE001
            raise_for_ui(exc)
        status = views.sweep_status(result, request_s=time.perf_counter() - started, download=download)
        return preview, sheet, [download], status

    # -- focus interaction (private events) -----------------------------------------------------

    def on_upload(self, image: Any) -> tuple:
        """A new photo: decode it with our code, remember the upright original, reset the focus.

        Returns (photo, state, focus x, focus y, status, *cleared outputs): the results, disparity
        view, downloads, details and sweep of the previous photo are emptied (:data:`CLEARED`). A
        file that cannot be read is removed from the photo box and the status line says why (with a
        warning toast); the server only logs one line.
        """
        if image is None:
            return (None, None, None, None, self.startup_status(), *CLEARED)
        try:
            original, show_copy, depth_format = views.open_upload(image)
            # HEIC, or a phone portrait rendered from the original it carries: show what is rendered.
            shown = outputs.write_png(new_output_dir(), "photo.png", np.asarray(original)) if show_copy else gr.skip()
        except MagicBokehError as exc:
            gr.Warning(f"Cannot read this photo: {exc}", title="Unreadable photo")
            return (None, None, None, None, f"⚠ **Cannot read this photo:** {exc}", *CLEARED)
        w, h = original.size
        # The file itself is rendered (views.photo_source): it may carry a phone's depth and focus.
        file = image.get("path") if isinstance(image, dict) else image
        state = {"original": original, "display_key": views.image_key(original),
                 "file": file if isinstance(file, (str, Path)) else None}
        carries = f" It carries its own depth map ({depth_format}), used by Automatic." if depth_format else ""
        return (shown, state, None, None, f"Photo loaded ({w}×{h}). **Click on it** to choose the focus "
                f"point; until then the focus is automatic.{carries}", *CLEARED)

    def on_clear(self) -> tuple:
        """The photo was removed: forget it, the focus point and what was rendered from it."""
        return (None, None, None, self.startup_status(), *CLEARED)


#: What a new or removed photo empties: before/after, gallery, disparity view, downloads, details,
#: and the sweep's preview, contact sheet, download and status (the order of ``app.CLEARED_OUTPUTS``).
CLEARED = (None, gr.update(value=None, visible=False), None, None, None, None, None, None, "")


def _decode_or_error(image: Any, state: dict | None) -> Image.Image | None:
    try:
        return views.resolve_original(image, state)
    except MagicBokehError as exc:
        raise gr.Error(str(exc), title="Unreadable photo", print_exception=False) from None


def _marked(original: Image.Image, x: int, y: int, state: dict | None = None) -> tuple[str, dict]:
    """The original with a focus marker at (x, y), as a PNG file of its own, and the click state."""
    marked = views.draw_marker(np.asarray(original.convert("RGB")), x, y)
    path = outputs.write_png(new_output_dir(), "photo_focus.png", marked)
    return path, {"original": original, "display_key": content_key(marked), **views.file_state(state, original)}


def on_select(image: Any, state: dict | None, evt: gr.SelectData) -> tuple:
    """A click on the photo: focus there, and show a marker at the clicked pixel.

    ``evt.index`` is (x, y) in the pixel grid of the file the browser shows, which is always the
    full-resolution upright original or our marked copy of it (same size), so it maps 1:1 to the
    original's pixels.
    """
    original = _decode_or_error(image, state)
    if original is None or evt is None or evt.index is None:
        raise gr.Error("Upload a photo first, then click on it.", title="No photo", print_exception=False)
    w, h = original.size
    x = int(min(max(round(float(evt.index[0])), 0), w - 1))
    y = int(min(max(round(float(evt.index[1])), 0), h - 1))
    return (*_marked(original, x, y, state), x, y)


def on_typed_focus(image: Any, state: dict | None, focus_x: Any, focus_y: Any) -> tuple:
    """Enter in focus x or y: move the marker to the typed pixel (the render that follows checks it).

    Coordinates that are empty or outside the photo leave the photo as it is; the render then says
    what is wrong.
    """
    try:
        original = views.resolve_original(image, state)
        x, y = int(round(float(focus_x))), int(round(float(focus_y)))
    except (MagicBokehError, TypeError, ValueError):
        return gr.skip(), gr.skip()
    if original is None or not (0 <= x < original.size[0] and 0 <= y < original.size[1]):
        return gr.skip(), gr.skip()
    return _marked(original, x, y, state)


def clear_focus(image: Any, state: dict | None) -> tuple:
    """Back to automatic focus: remove the marker and empty the focus readout."""
    original = _decode_or_error(image, state)
    if original is None:
        return gr.skip(), None, None, None
    path = outputs.write_png(new_output_dir(), "photo.png", np.asarray(original.convert("RGB")))
    return path, {"original": original, "display_key": views.image_key(original),
                  **views.file_state(state, original)}, None, None


def reset_focus() -> tuple:
    """Page load: an empty focus readout (Gradio shows and sends 0 for a Number created as None)."""
    return None, None


def on_map_upload() -> str:
    """A disparity map was uploaded: select it as the depth source."""
    return app_support.DEPTH_UPLOADED


def on_map_clear() -> str:
    """The disparity map was removed: back to automatic depth."""
    return app_support.DEPTH_AUTO
