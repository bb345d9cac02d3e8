"""The app's event handlers: each receives one :class:`~magicbokeh.app_settings.AppSettings`.

:class:`Handlers` holds what the handlers share (model sources, the backend table, the default
backend), so nothing is kept in module globals. Every render, sweep and API call goes the one road
into the core: :meth:`AppSettings.request` -> :func:`magicbokeh.zerogpu.render_request` ->
:func:`magicbokeh.pipeline.run` (sweeps: :func:`magicbokeh.sweep.render_sweep` with that router).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
from PIL import Image

from .. import app_support, processing, zerogpu
from .. import sweep as sweep_core
from ..app_settings import AppSettings, ModelSources
from ..backends import Availability, backend_names, get_backend
from ..depth import depth_status
from ..errors import MagicBokehError
from ..images import content_key, save_png, to_uint8
from ..request import RenderResult
from . import views

_OUTPUT_DIR = Path(tempfile.gettempdir()) / "magicbokeh-app"
_OUTPUT_MAX_AGE_S = 3600.0
NO_PHOTO = "Upload a photo first (or pick an example below)."


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


def new_output_dir() -> Path:
    """A fresh folder for one render's downloads; folders older than an hour are removed."""
    _OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in _OUTPUT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > _OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=_OUTPUT_DIR))


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
        """
        original = views.resolve_original(s.image, s.state)
        if original is None:
            raise gr.Error(NO_PHOTO, title="No photo", print_exception=False)
        try:
            results = self.render_results(s, original, progress)
        except Exception as exc:  # noqa: BLE001
            raise_for_ui(exc)
        first = results[0]
        before = to_uint8(first.photo.rgb)
        if len(results) > 1:
            items = [(before, "input")] + [(to_uint8(r.image), r.backend) for r in results]
            gallery = gr.update(value=items, visible=True, columns=len(items))
            info: dict[str, Any] = {"backends": {r.backend: r.info() for r in results}}
        else:
            gallery = gr.update(value=None, visible=False)
            info = first.info()
        folder = new_output_dir()
        files = [str(save_png(folder / f"magicbokeh_K{r.settings.k:g}_{r.backend}.png", r.image)) for r in results]
        status = views.status_markdown(results, self.table, self.sources.device)
        return (before, to_uint8(first.image)), gallery, views.disparity_view(first), status, files, info

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
        """The /render API: (input, result) pair, disparity view, JSON summary (see ``app.render``)."""
        if s.image is None:
            raise gr.Error("no image given; pass a photo.", title="No photo", print_exception=False)
        try:
            # Decoded by our code (the API input is a plain file): a corrupt upload gets our message.
            (result,) = self.render_results(s, processing.decode_upload(s.image), progress)
        except Exception as exc:  # noqa: BLE001
            raise_for_ui(exc)
        pair = (to_uint8(result.photo.rgb), to_uint8(result.image))
        return pair, views.disparity_view(result), result.info()

    def sweep(self, s: AppSettings, progress: Any = _no_progress) -> tuple:
        """The "Make sweep" button: an animated GIF and a PNG strip of the current photo and settings.

        Uses the first selected backend. Returns (GIF path, strip path, both paths, a status line).
        """
        original = views.resolve_original(s.image, s.state)
        if original is None:
            raise gr.Error(NO_PHOTO, title="No photo", print_exception=False)
        try:
            if not s.backends:
                raise MagicBokehError("select at least one backend.")
            backend = s.backends[0]
            zerogpu.check_allowed("sweep", backend)
            s.render_settings(backend, self.sources), s.depth_spec()
            if s.simulate_lq:
                progress(0.0, desc="simulating a low-quality capture")
            request = s.sweep_request(s.source_photo(original), backend, self.sources)
            result = sweep_core.render_sweep(
                request, kind=s.sweep_kind, frames=s.sweep_frames, k_max=s.sweep_k_max,
                progress=progress_adapter(progress, 0.0, 0.95, f"{s.sweep_kind} sweep"),
                render=zerogpu.render_request,
            )
            progress(0.95, desc="writing GIF and PNG strip")
            folder = new_output_dir()
            stem = f"magicbokeh_{result.kind}_sweep"
            (gif,) = sweep_core.save_sweep(result.frames, folder / f"{stem}.gif")
            (strip,) = sweep_core.save_sweep(result.frames, folder / f"{stem}.png")
        except Exception as exc:  # noqa: BLE001
            raise_for_ui(exc)
        return str(gif), str(strip), [str(gif), str(strip)], views.sweep_status(result)

    # -- focus interaction (private events) -----------------------------------------------------

    def on_upload(self, image: Image.Image | None) -> tuple:
        """A new photo: remember the upright original, reset the focus to automatic."""
        if image is None:
            return None, None, None, self.startup_status()
        image = views.upright(image)
        w, h = image.size
        state = {"original": image, "display_key": views.image_key(image)}
        return state, None, None, (f"Photo loaded ({w}×{h}). **Click on it** to choose the focus point; "
                                   "until then the focus is automatic.")

    def on_clear(self) -> tuple:
        """The photo was removed: forget it and the focus point."""
        return None, None, None, self.startup_status()


def on_select(image: Image.Image | None, state: dict | None, evt: gr.SelectData) -> tuple:
    """A click on the photo: focus there, and show a marker at the clicked pixel.

    ``evt.index`` is (x, y) in the pixel grid of the file the browser shows, which is always the
    full-resolution upright original or our marked copy of it (same size), so it maps 1:1 to the
    original's pixels.
    """
    original = views.resolve_original(image, state)
    if original is None or evt is None or evt.index is None:
        raise gr.Error("Upload a photo first, then click on it.", title="No photo", print_exception=False)
    w, h = original.size
    x = int(min(max(round(float(evt.index[0])), 0), w - 1))
    y = int(min(max(round(float(evt.index[1])), 0), h - 1))
    marked = views.draw_marker(np.asarray(original.convert("RGB")), x, y)
    return marked, {"original": original, "display_key": content_key(marked)}, x, y


def clear_focus(image: Image.Image | None, state: dict | None) -> tuple:
    """Back to automatic focus: remove the marker and empty the focus readout."""
    original = views.resolve_original(image, state)
    if original is None:
        return gr.skip(), None, None, None
    return original, {"original": original, "display_key": views.image_key(original)}, None, None


def reset_focus() -> tuple:
    """Page load: an empty focus readout (Gradio shows and sends 0 for a Number created as None)."""
    return None, None


def on_map_upload() -> str:
    """A disparity map was uploaded: select it as the depth source."""
    return app_support.DEPTH_UPLOADED


def on_map_clear() -> str:
    """The disparity map was removed: back to automatic depth."""
    return app_support.DEPTH_AUTO
