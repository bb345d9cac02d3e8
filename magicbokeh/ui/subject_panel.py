"""Point prompts in the app: a click selects the subject under it (Segment Anything, or GrabCut
without its weights), shown as an overlay on the photo; positive/negative points; the option that
keeps the whole subject sharp; and the subject models' lines in the licence panel.

The clicks are kept as ``[x, y, label]`` in the photo's pixels (an AppSettings field), so the
render, the sweep and the ``/render`` API take the same road: ``Focus.points`` ->
:func:`magicbokeh.subject.render_focus.prepare`. The mask shown after a click is computed by the
same cached function the render uses, so the render after the click does not segment again, and
SAM's image embedding is cached per photo, so later clicks only run its mask decoder.
"""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr
import numpy as np

from ..app_settings import ModelSources
from ..errors import MagicBokehError
from ..images import content_key
from ..subject.masks import NEGATIVE, POSITIVE, mask_overlay
from . import outputs, views

MODE_ADD, MODE_REMOVE, MODE_PIXEL = "add", "remove", "pixel"
CLICK_MODES = [("Add to subject", MODE_ADD), ("Remove from subject", MODE_REMOVE), ("Focus on a pixel", MODE_PIXEL)]
POINT_COLOURS = {POSITIVE: (40, 200, 80), NEGATIVE: (230, 40, 40)}


def subject_panel(sources: ModelSources) -> dict[str, Any]:
    """The click mode, the keep-sharp option and "Clear points" (under the photo)."""
    from ..subject.ldf import saliency_status

    salient = _salient(sources)
    with gr.Row(elem_classes="focus-row"):
        mode = gr.Radio(CLICK_MODES, value=MODE_ADD, label="A click on the photo", elem_id="click-mode",
                        info="adds to or removes from the subject (Segment Anything), or focuses on one pixel")
        clear = gr.Button("Clear points", size="md", variant="secondary", elem_id="clear-points", min_width=90)
    subject = gr.Checkbox(value=salient, label="Keep the whole subject sharp", elem_id="keep-subject",
                          info="focal plane = the official median under the subject's mask, no blur on the "
                               "subject, the background as without it (on once a subject is selected)")
    points = gr.State(None)
    gr.Markdown(_hint(sources, saliency_status(sources.saliency_model)[1]), elem_id="subject-hint")
    # /render API inputs: its own, so an old client's call keeps the old behaviour (subject off).
    api_subject = gr.Checkbox(value=False, visible=False, label="subject")
    api_points = gr.JSON(value=None, visible=False, label="points")
    return dict(mode=mode, clear=clear, subject=subject, points=points, api_subject=api_subject,
                api_points=api_points)


def _hint(sources: ModelSources, saliency_line: str) -> str:
    from ..subject.sam import sam_status

    return f"<small>Clicks: {sam_status(sources.sam_model)[1]} Automatic focus: {saliency_line}</small>"


def overlay_photo(original: Any, mask: np.ndarray | None, points: list) -> np.ndarray:
    """The photo with the subject tinted and each point drawn (green = subject, red = not)."""
    import cv2

    rgb = np.asarray(original.convert("RGB"))
    out = mask_overlay(rgb, mask) if mask is not None else rgb.copy()
    r = max(4, round(0.012 * max(out.shape[:2])))
    for x, y, label in points:
        centre = (int(round(x)), int(round(y)))
        cv2.circle(out, centre, r + 2, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(out, centre, r, POINT_COLOURS[int(label)], -1, cv2.LINE_AA)
    return out


def click_handler(sources: ModelSources) -> Callable[..., tuple]:
    """The photo's select event: (photo, state, focus x, focus y, points, keep-sharp checkbox)."""
    from . import handlers

    def on_click(image: Any, state: dict | None, points: list | None, mode: str, subject: bool,
                 evt: gr.SelectData) -> tuple:
        if mode == MODE_PIXEL:  # the old behaviour: one pixel, no subject
            return (*handlers.on_select(image, state, evt), None, gr.skip())
        original = handlers._decode_or_error(image, state)
        if original is None or evt is None or evt.index is None:
            raise gr.Error("Upload a photo first, then click on it.", title="No photo", print_exception=False)
        w, h = original.size
        x = int(min(max(round(float(evt.index[0])), 0), w - 1))
        y = int(min(max(round(float(evt.index[1])), 0), h - 1))
        # Points belong to the photo they were clicked on (an example or a new photo starts afresh).
        same_photo = bool(state) and state.get("original") is original
        new = [*((points or []) if same_photo else []), [x, y, POSITIVE if mode != MODE_REMOVE else NEGATIVE]]
        if not any(p[2] == POSITIVE for p in new):
            raise gr.Error("Add a point on the subject first (mode “Add to subject”).", title="No subject",
                           print_exception=False)
        mask = select_subject(original, new, sources)
        shown = overlay_photo(original, mask, new)
        path = outputs.write_png(outputs.new_response_folder(), "photo_subject.png", shown)
        new_state = {"original": original, "display_key": content_key(shown), **views.file_state(state, original)}
        keep = gr.update(value=True) if len(new) == 1 else gr.skip()  # on once a subject exists
        return path, new_state, None, None, new, keep

    return on_click


def select_subject(original: Any, points: list, sources: ModelSources) -> np.ndarray:
    """The subject mask under ``points`` (bool), with the render's cache; MagicBokehError -> gr.Error."""
    from ..subject.render_focus import point_mask

    try:
        found, _ = point_mask(np.asarray(original.convert("RGB")), points, sources.sam_model)
    except MagicBokehError as exc:
        raise gr.Error(str(exc), title="Cannot select the subject", print_exception=False) from None
    for message in found.messages:
        gr.Warning(message, title="Subject from GrabCut")
    return found.mask


def clear_handler(sources: ModelSources) -> Callable[..., tuple]:
    """"Clear points": forget the points and the overlay (back to automatic focus); returns photo,
    state, points and the keep-sharp checkbox (left on only where a saliency model gives a mask)."""
    from . import handlers

    salient = _salient(sources)

    def clear_points(image: Any, state: dict | None, subject: bool) -> tuple:
        photo, new_state, *_ = handlers.clear_focus(image, state)
        return photo, new_state, None, gr.update(value=salient and bool(subject))

    return clear_points


def _salient(sources: ModelSources) -> bool:
    """Whether a usable saliency model is configured (automatic focus then has a subject mask)."""
    from ..subject.ldf import resolve_saliency_model

    try:
        return resolve_saliency_model(sources.saliency_model) is not None
    except MagicBokehError:
        return False


def models_panel(sources: ModelSources) -> None:
    """The "Models and licences" panel, with the subject models' lines."""
    with gr.Accordion("Models and licences", open=False):
        gr.Markdown(views.models_markdown() + licence_markdown(sources))


def licence_markdown(sources: ModelSources) -> str:
    """The subject models' lines for the "Models and licences" panel: source, licence, what is missing."""
    from ..subject.ldf import LICENCE_TEXT, WEIGHTS_SOURCE, saliency_status
    from ..subject.sam import SAM_LICENCE_TEXT, sam_status

    ldf_ok, ldf_line = saliency_status(sources.saliency_model)
    sam_ok, sam_line = sam_status(sources.sam_model)
    return (
        "\n\n**Subject focus**\n\n"
        f"* **LDF salient-object model** (automatic focus, official rule): {LICENCE_TEXT} Source: "
        f"{WEIGHTS_SOURCE} {'✅' if ldf_ok else '⚠'} {ldf_line}\n"
        f"* **Segment Anything** (clicks select the subject): {SAM_LICENCE_TEXT} Source: the Hugging Face "
        f"hub, downloaded on the first click (set `MAGICBOKEH_SAM_MODEL` for another). "
        f"{'✅' if sam_ok else '⚠'} {sam_line}\n"
        "* **GrabCut** (clicks without SAM weights): OpenCV, Apache-2.0; no weights.\n"
    )
