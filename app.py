"""MagicBokeh Gradio demo: click a photo to choose what stays sharp, pick a blur strength K.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--backend classical]
                  [--depth-model ID|DIR] [--base ID|DIR] [--checkpoint FILE|ID] [--device auto|cpu|cuda]
                  [--saliency-model PATH] [--sam-model ID|DIR]

This file only wires the UI: panels come from :mod:`magicbokeh.ui.panels`, handlers from
:mod:`magicbokeh.ui.handlers` (each receives one :class:`~magicbokeh.app_settings.AppSettings`),
and every computation goes through the core (:func:`magicbokeh.zerogpu.render_request` ->
:func:`magicbokeh.pipeline.run`). ``demo`` is built at import and launched under ``__main__``.

Model sources and the device come from the flags above or from the environment variables
``MAGICBOKEH_DEPTH_MODEL``, ``MAGICBOKEH_BASE``, ``MAGICBOKEH_CHECKPOINT``, ``MAGICBOKEH_DEVICE``,
``MAGICBOKEH_SALIENCY_MODEL`` and ``MAGICBOKEH_SAM_MODEL`` (flags win; see
:class:`~magicbokeh.app_settings.ModelSources`). Nothing is
downloaded at start-up: with no network the app starts in seconds, renders with the weight-free
classical backend and approximate depth, and says so in the status line.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import gradio as gr

from magicbokeh import zerogpu  # noqa: I001 - first magicbokeh import: imports spaces before torch
from magicbokeh import warmup
from magicbokeh.app_settings import SOURCE_ENV, ModelSources
from magicbokeh.depth import depth_status
from magicbokeh.lens_blur import warm_up_in_background
from magicbokeh.ui import handlers as ui_handlers
from magicbokeh.ui import panels, subject_panel, views
from magicbokeh.ui.api import render_api
from magicbokeh.ui.form import Form
from magicbokeh.ui.handlers import Handlers

logger = logging.getLogger("magicbokeh.app")
# Examples without a disparity map pass None on purpose; Gradio warns about any None at start-up.
warnings.filterwarnings("ignore", message="Examples will be cached but not all", category=UserWarning)

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
__all__ = ["SOURCE_ENV", "build_demo", "demo", "handlers", "launch", "main", "parse_args", "render"]

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
    ("motorcycle.jpg", 420, 200, 24, "motorcycle_disparity.png", False, "Motorcycle, measured depth (Middlebury 2014)"),
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
# Layout and events
# --------------------------------------------------------------------------------------------


def build_demo(app_handlers: Handlers) -> gr.Blocks:
    """Build the Blocks app around one set of handlers (backend availability was read by them)."""
    h = app_handlers
    with gr.Blocks(title="MagicBokeh — click to focus, slide to blur", delete_cache=(3600, 3600)) as blocks:
        state = gr.State(None)
        gr.Markdown(panels.DESCRIPTION, elem_id="title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=340):
                photo = {**panels.photo_panel(), **subject_panel.subject_panel(h.sources)}
                blur = panels.blur_panel(views.backend_choices(h.table), h.default_backends)
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    optics = panels.optics_panel()
                    depth = panels.depth_panel()
                    capture = panels.capture_panel()
                    gr.Markdown("**Backends on this machine**\n\n" + views.backend_notes(h.table))
                render_btn = gr.Button("Render", variant="primary", size="lg", elem_id="render")
            with gr.Column(scale=7, min_width=400):
                out = panels.result_panel(h.startup_status())
                sweep = panels.sweep_panel()
                with gr.Accordion("Details (JSON)", open=False):
                    info_json = gr.JSON(label="Render info", elem_id="info")
        outputs = [out["slider"], out["gallery"], out["depth_view"], out["status"], out["download"], info_json]
        rows, labels = example_rows()
        if rows:
            gr.Examples(
                examples=rows,
                inputs=[photo["image"], photo["focus_x"], photo["focus_y"], blur["k"], depth["disparity_map"],
                        optics["highlight_boost"]],
                outputs=outputs, fn=h.render_example, cache_examples=True, cache_mode="lazy",
                example_labels=labels, label="Examples — each with a preset focus point and K", examples_per_page=8,
            )
        subject_panel.models_panel(h.sources)
        api = panels.api_panel(list(h.table))

        settings = {"image": photo["image"], "state": state, "focus_x": photo["focus_x"],
                    "focus_y": photo["focus_y"], "k": blur["k"], "backends": blur["backends"],
                    "restored_depth": blur["restored_depth"], **optics, **depth,
                    "points": photo["points"], "subject": photo["subject"],
                    **{key: capture[key] for key in ("simulate_lq", "lq_preset", "lq_seed", "focus_parity")}}
        render_form = Form({**settings, "max_side": capture["max_side"],
                            "match_input_size": capture["match_input_size"]})
        sweep_form = Form({**settings, **{key: sweep[key] for key in ("sweep_kind", "sweep_frames", "sweep_k_max",
                                                                       "sweep_k_multiples")}})
        cleared = [*outputs[:3], out["download"], info_json, sweep["gif"], sweep["strip"], sweep["files"],
                   sweep["status"]]
        _wire(blocks, h, photo, blur, depth, sweep, state, render_btn, outputs, cleared, render_form, sweep_form)
        api_inputs = [api["image"], photo["focus_x"], photo["focus_y"], blur["k"], api["backend"],
                      depth["disparity_map"], depth["disparity_is_depth"], optics["focal_range"], optics["aperture"],
                      optics["blades"], optics["rotation_deg"], optics["highlight_boost"], capture["focus_parity"],
                      depth["depth_model"], capture["simulate_lq"], capture["lq_preset"], capture["lq_seed"],
                      capture["max_side"], capture["match_input_size"], photo["api_subject"], photo["api_points"]]
        api["trigger"].click(render_api(h), api_inputs, [out["slider"], out["depth_view"], info_json],
                             api_name="render", concurrency_id=RENDER_CONCURRENCY_ID,
                             concurrency_limit=RENDER_CONCURRENCY)
    blocks.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return blocks


def _wire(blocks: gr.Blocks, h: Handlers, photo: dict, blur: dict, depth: dict, sweep: dict, state: Any,
          render_btn: Any, outputs: list, cleared: list, render_form: Form, sweep_form: Form) -> None:
    """The private events: uploads, clicks, Enter in focus x/y, the Render and Sweep buttons, slider
    releases. A failed render or sweep puts its reason in the status line (``Form.failed``)."""
    private = dict(api_visibility="private")
    shared = dict(concurrency_id=RENDER_CONCURRENCY_ID, concurrency_limit=RENDER_CONCURRENCY, **private)
    render, rerender = render_form.handler(h.render), render_form.handler(h.rerender)
    image, focus, status = photo["image"], [photo["focus_x"], photo["focus_y"]], outputs[3]
    blocks.load(ui_handlers.reset_focus, None, focus, queue=False, **private)
    # Queued (its own pool), so an unreadable file's warning toast reaches the browser.
    image.upload(h.on_upload, [image], [image, state, *focus, status, *cleared], concurrency_id="upload",
                 concurrency_limit=RENDER_CONCURRENCY, **private)
    image.clear(h.on_clear, None, [state, *focus, status, *cleared], queue=False, **private)
    points, subject = photo["points"], photo["subject"]
    for event in (image.upload, image.clear):  # a new or removed photo forgets the points
        event(lambda: None, None, [points], queue=False, **private)
    renders = [
        image.select(subject_panel.click_handler(h.sources), [image, state, points, photo["mode"], subject],
                     [image, state, *focus, points, subject], trigger_mode="always_last",
                     **private).then(rerender, render_form.inputs, outputs, trigger_mode="always_last", **shared),
        photo["auto_btn"].click(ui_handlers.clear_focus, [image, state], [image, state, *focus], **private)
        .then(lambda: None, None, [points], queue=False, **private).then(rerender, render_form.inputs, outputs, **shared),
        photo["clear"].click(subject_panel.clear_handler(h.sources), [image, state, subject],
                             [image, state, points, subject], **private).then(rerender, render_form.inputs, outputs,
                                                                              **shared),
        render_btn.click(render, render_form.inputs, outputs, **shared),
        blur["k"].release(rerender, render_form.inputs, outputs, trigger_mode="always_last", **shared),
    ]
    for number in focus:  # typing a coordinate and pressing Enter renders there
        renders.append(number.submit(ui_handlers.on_typed_focus, [image, state, *focus], [image, state],
                                     **private).then(render, render_form.inputs, outputs, **shared))
    for event in renders:
        event.failure(render_form.failed, None, [status], queue=False, **private)
    blur["backends"].change(panels.on_backends_change, [blur["backends"]], [blur["restored_depth"]], queue=False,
                            **private)
    # An uploaded map selects "Uploaded map"; removing it goes back to Automatic.
    depth["disparity_map"].upload(ui_handlers.on_map_upload, None, [depth["depth_model"]], queue=False, **private)
    depth["disparity_map"].clear(ui_handlers.on_map_clear, None, [depth["depth_model"]], queue=False, **private)
    sweep["button"].click(sweep_form.handler(h.sweep), sweep_form.inputs,
                          [sweep["gif"], sweep["strip"], sweep["files"], sweep["status"]],
                          **shared).failure(sweep_form.failed, None, [sweep["status"]], queue=False, **private)


def create(sources: ModelSources, default_backends: Sequence[str] | None = None) -> tuple[Handlers, gr.Blocks]:
    """Handlers for these model sources and the demo built around them."""
    app_handlers = Handlers(sources, default_backends)
    if zerogpu.zero_gpu_active():
        # ZeroGPU: build the networks and move them to CUDA once, at start (not inside each call).
        for note in warmup.prepare_models(sources.backend_options("magicbokeh"), sources.depth_model):
            logger.info(note)
    return app_handlers, build_demo(app_handlers)


handlers, demo = create(ModelSources.from_env())
#: The /render function of the module's demo (also handy to call from Python).
render = render_api(handlers)


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
        server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE,
        allowed_paths=[str(EXAMPLES_DIR)], footer_links=["api", "gradio", "settings"],
        theme=panels.THEME, css=panels.CSS, **kwargs,
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
    parser.add_argument("--saliency-model", help="LDF model-40 path: official salient-object automatic focus "
                        "(env MAGICBOKEH_SALIENCY_MODEL)")
    parser.add_argument("--sam-model", help="Segment Anything hub id or folder for clicks (env MAGICBOKEH_SAM_MODEL)")
    parser.add_argument("--mcp", action=argparse.BooleanOptionalAction, default=None,
                        help="serve the MCP endpoint (default: on when gradio[mcp] is installed)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sources = ModelSources.from_env(depth_model=args.depth_model, base=args.base, checkpoint=args.checkpoint,
                                    device=args.device, saliency_model=args.saliency_model,
                                    sam_model=args.sam_model)
    selected = [b.strip() for b in args.backend.split(",") if b.strip()] or ["classical"]
    app_handlers, app = handlers, demo
    if selected != ["classical"] or sources != handlers.sources:
        # A demo of its own, so the default selection and backend availability reflect the flags.
        app_handlers, app = create(sources, selected)
    # Say on the console, too, what works here and what is missing (and how to get it).
    ok, sentence = depth_status(sources.depth_model)
    print(f"{'ready' if ok else 'fallback':>11}  depth: {sentence}")
    for name, (status, _) in app_handlers.table.items():
        print(f"{'ready' if status.ok else 'unavailable':>11}  {name}: {status.reason}")
    # The classical renderer's compiled code: compiled once per machine (cached), loaded per process.
    warm_up_in_background()
    magicbokeh = app_handlers.table.get("magicbokeh")
    if magicbokeh is not None and magicbokeh[0].ok:
        # A machine with its own GPU: load and warm up while the server starts (no-op on CPUs and
        # on ZeroGPU), so the first render is not the slow one.
        threading.Thread(target=lambda: [logger.info(n) for n in warmup.warm_up_at_start(
            sources.backend_options("magicbokeh"), sources.depth_model)], daemon=True).start()
    launch(app, host=args.host, port=args.port, share=args.share, mcp=args.mcp)


if __name__ == "__main__":
    main()
