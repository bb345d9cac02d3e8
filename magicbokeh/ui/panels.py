"""The demo's layout, one small builder per panel; each returns its components by name.

The names are :class:`~magicbokeh.app_settings.AppSettings` fields where a component holds a
setting, so :class:`~magicbokeh.ui.form.Form` can read them into one object.
"""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr

from .. import app_support
from ..settings import BLADES_RANGE, FOCAL_RANGE_MAX, K_DEFAULT, K_RANGE
from ..sweep import MIN_FRAMES
from . import views

#: Processing size menu (long side); "auto" = the backend's default, "original" = no downscale.
PROCESSING_CHOICES = [("Automatic (MagicBokeh 1600 px, classical 3072 px)", "auto"), ("1024 px", "1024"),
                      ("1600 px", "1600"), ("2048 px", "2048"), ("3072 px", "3072"),
                      ("Original size", "original")]
DISPARITY_FILE_TYPES = [".png", ".npy", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp"]
#: Most frames the app's sweep slider offers (the CLI allows more).
SWEEP_MAX_FRAMES_UI = 24

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

Panel = dict[str, Any]


def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` that hands its handlers the uploaded file's path *without opening it*.

    ``gr.Image.preprocess`` opens every upload with Pillow, even with ``type="filepath"``, so an
    unreadable file failed inside Gradio before any handler ran (a bare "Error" badge and a server
    traceback). Our handlers decode the path with our own reader instead (``views.upright``) and
    say what is wrong. The instance's ``preprocess`` is replaced rather than the class subclassed:
    Gradio writes a ``.pyi`` stub next to the module of every Component subclass.
    """
    image = gr.Image(type="filepath", **kwargs)
    opening = image.preprocess

    def preprocess(payload: Any) -> Any:
        if payload is None or getattr(payload, "path", None) is None:
            return opening(payload)  # nothing, or an inline data: URL
        return str(payload.path)

    image.preprocess = preprocess
    return image


def photo_panel() -> Panel:
    """The photo (click to focus) and the focus readout.

    The handlers get the uploaded file's path and decode it with our code (``views.upright``), so an
    unreadable file gets our message instead of failing inside Gradio before any handler runs.
    """
    image = photo_input(label="Photo — click to set the focus point", format="png",
                     sources=["upload", "clipboard"], height=420, elem_id="input-image")
    with gr.Row(elem_classes="focus-row"):
        focus_x = gr.Number(label="Focus x (px)", value=None, precision=0, elem_id="focus-x", min_width=90)
        focus_y = gr.Number(label="Focus y (px)", value=None, precision=0, elem_id="focus-y", min_width=90)
        auto_btn = gr.Button("Auto focus", size="md", variant="secondary", elem_id="auto-focus", min_width=90)
    return dict(image=image, focus_x=focus_x, focus_y=focus_y, auto_btn=auto_btn)


def blur_panel(choices: Sequence[tuple[str, str]], default_backends: Sequence[str]) -> Panel:
    """Blur strength K and the backends to render with."""
    k = gr.Slider(
        K_RANGE[0], K_RANGE[1], value=K_DEFAULT, step=0.5, label="Blur strength K",
        info="0 = no blur, restoration only · 32 = strongest (the paper's setting) · in pixels "
             "of your photo: a smaller processing size gets K × its scale, so the blur looks the same",
        elem_id="k-slider",
    )
    backends = gr.CheckboxGroup(choices=list(choices), value=list(default_backends),
                                label="Backend — tick several to compare side by side", elem_id="backends")
    restored_depth = gr.Checkbox(value=False, label="Re-estimate depth on the restored photo (two-stage)",
                                 info="as published two-stage baselines do; default: the input's depth, "
                                      "the map the joint model sees",
                                 visible=two_stage_ticked(default_backends), elem_id="restored-depth")
    return dict(k=k, backends=backends, restored_depth=restored_depth)


def two_stage_ticked(backends: Sequence[str] | None) -> bool:
    """Whether the two-stage backend is ticked (its restored-depth option is shown only then)."""
    return "two-stage" in (backends or [])


def on_backends_change(backends: Sequence[str] | None) -> Any:
    """Ticking or unticking the two-stage backend shows or hides its restored-depth option."""
    return gr.update(visible=two_stage_ticked(backends))


def optics_panel() -> Panel:
    """Focal range, aperture shape and highlight boost."""
    focal_range = gr.Slider(0.0, FOCAL_RANGE_MAX, value=0.0, step=0.01, label="Focal range",
                            info="depth band around the focus kept fully sharp "
                                 "(disparity units, 0 = only the focal plane)")
    with gr.Row():
        aperture = gr.Radio(["circle", "polygon"], value="circle", label="Aperture shape")
        highlight = gr.Checkbox(value=False, label="Highlight boost", info="bright spots bloom into bokeh discs")
    with gr.Row():
        blades = gr.Slider(BLADES_RANGE[0], BLADES_RANGE[1], value=6, step=1, label="Blades (polygon)")
        rotation = gr.Slider(0, 180, value=0, step=1, label="Rotation (°)")
    return dict(focal_range=focal_range, aperture=aperture, highlight_boost=highlight, blades=blades,
                rotation_deg=rotation)


def depth_panel() -> Panel:
    """An uploaded disparity map and the depth source."""
    disparity_map = gr.File(label="Disparity map (optional: .png 8/16-bit or .npy, 1 = near)",
                            file_types=DISPARITY_FILE_TYPES, type="filepath", height=130,
                            elem_id="disparity-file")
    is_depth = gr.Checkbox(value=False, label="The map is depth (far = large)")
    depth_model = gr.Dropdown(
        choices=app_support.depth_menu(), value=app_support.DEPTH_AUTO, label="Depth source (with licence)",
        info="Automatic says in the status line which model ran and why; a model that "
             "is not available here is refused, Automatic falls back to approximate",
        elem_id="depth-model",
    )
    return dict(disparity_map=disparity_map, disparity_is_depth=is_depth, depth_model=depth_model)


def capture_panel() -> Panel:
    """The low-quality capture simulation, the focus rule and the processing size."""
    with gr.Group():
        simulate_lq = gr.Checkbox(
            value=False, label="Simulate a low-quality capture",
            info="degrade the photo (4× resolution loss) before rendering, to see the "
                 "restoration on a clean photo; “before” then shows the degraded photo",
            elem_id="simulate-lq",
        )
        with gr.Row():
            lq_preset = gr.Radio([("Real-ESRGAN (blur, resize, noise, JPEG)", "realesrgan"), ("Digital zoom", "zoom")],
                                 value="realesrgan", label="Degradation", elem_id="lq-preset")
            lq_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", info="same seed, same degradation",
                                elem_id="lq-seed", min_width=90)
    parity = gr.Checkbox(value=False, label="Official focus rule",
                         info="use the 8-bit disparity of the single clicked pixel, as "
                              "the MagicBokeh demo (default: median of a 7x7 window)")
    with gr.Row():
        max_side = gr.Dropdown(
            choices=PROCESSING_CHOICES, value="auto", label="Processing size (long side)",
            info="large photos are rendered at this size; the blur looks the same "
                 "(type any long side from 64 to 8192 px)",
            allow_custom_value=True, elem_id="processing-size")
        match_size = gr.Checkbox(value=True, label="Match input size", info="resize the result back to the photo's size",
                                 elem_id="match-input-size")
    return dict(simulate_lq=simulate_lq, lq_preset=lq_preset, lq_seed=lq_seed, focus_parity=parity,
                max_side=max_side, match_input_size=match_size)


def result_panel(startup: str) -> Panel:
    """Before/after, the side-by-side gallery, the status, the disparity view and the download."""
    slider = gr.ImageSlider(label="Before / after", type="numpy", format="png", max_height=560,
                            elem_id="result-slider")
    gallery = gr.Gallery(label="Backends side by side", format="png", visible=False, height=300,
                         elem_id="compare-gallery", object_fit="contain")
    status = gr.Markdown(startup, elem_id="status")
    with gr.Row(equal_height=False):
        depth_view = gr.Image(label="Disparity, focus outlined", type="numpy", format="png", interactive=False,
                              height=260, elem_id="disparity-view")
        download = gr.File(label="Full-resolution PNG", file_count="multiple", interactive=False, height=120,
                           elem_id="download")
    return dict(slider=slider, gallery=gallery, status=status, depth_view=depth_view, download=download)


def sweep_panel() -> Panel:
    """Aperture or focus sweep: its controls, button, status and outputs."""
    with gr.Accordion("Sweep", open=False, elem_id="sweep"):
        with gr.Row():
            kind = gr.Radio([("Aperture: K from 0 to K max", "aperture"), ("Focus: near → far at the current K", "focus")],
                            value="aperture", label="Sweep", elem_id="sweep-kind")
            frames = gr.Slider(MIN_FRAMES, SWEEP_MAX_FRAMES_UI, value=8, step=1, label="Frames", elem_id="sweep-frames")
            k_max = gr.Slider(0.5, K_RANGE[1], value=K_RANGE[1], step=0.5, label="K max (aperture sweep)",
                              elem_id="sweep-k-max")
        multiples = gr.Textbox(label="K multiples (aperture sweep, optional)", placeholder="1,2,3",
                               info="one frame per multiple of the K slider (1,2,3: from 1× to 3× blur, "
                                    "the paper's Fig. 3); Frames and K max are then not used",
                               elem_id="sweep-k-multiples")
        button = gr.Button("Make sweep", variant="secondary", elem_id="make-sweep")
        status = gr.Markdown(elem_id="sweep-status")
        with gr.Row(equal_height=False):
            gif = gr.Image(label="Animation (preview)", type="filepath", interactive=False, height=260,
                           elem_id="sweep-gif")
            strip = gr.Image(label="All frames (preview)", type="filepath", interactive=False, height=260,
                             elem_id="sweep-strip")
        files = gr.File(label="Full-resolution animation (MP4, or animated WebP)", file_count="multiple",
                        interactive=False, height=100, elem_id="sweep-files")
    return dict(sweep_kind=kind, sweep_frames=frames, sweep_k_max=k_max, sweep_k_multiples=multiples,
                button=button, status=status,
                gif=gif, strip=strip, files=files)


def models_panel() -> None:
    """Every component, its licence and whether it is ready here."""
    with gr.Accordion("Models and licences", open=False):
        gr.Markdown(views.models_markdown())


def api_panel(backend_names: Sequence[str]) -> Panel:
    """Hidden inputs of the /render API: its photo (a plain file, decoded by our code, so a corrupt
    upload gets our message) and its single ``backend`` argument."""
    backend = gr.Dropdown(choices=list(backend_names), value="classical", visible=False, label="backend")
    trigger = gr.Button(visible=False)
    image = gr.File(label="image", type="filepath", visible=False)
    return dict(backend=backend, trigger=trigger, image=image)
