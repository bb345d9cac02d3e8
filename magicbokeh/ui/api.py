"""The public ``/render`` endpoint: its parameters are an API contract (names and order fixed,
new ones only appended, optional), so it alone takes them one by one."""

from __future__ import annotations

from typing import Callable

import gradio as gr
from PIL import Image

from ..app_settings import AppSettings
from ..settings import K_DEFAULT
from .handlers import Handlers


def render_api(handlers: Handlers) -> Callable[..., tuple[tuple[str, str], str, dict]]:
    """The ``/render`` function of one demo (Gradio reads its signature and docstring)."""

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
        subject: bool = False,
        points: list | None = None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[tuple[str, str], str, dict]:
        """Render lens blur (and, with the MagicBokeh backend, restore) one photo.

        Args:
            image: the photo (JPEG, PNG, WebP, HEIC/HEIF...); EXIF orientation is applied, so focus
                coordinates refer to the upright image. A phone portrait (iPhone HEIC, Google Camera
                GDepth or Dynamic Depth JPEG) brings its own depth map, original photo and focus point.
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
            depth_model: depth source: "auto" (the photo's own depth map when it carries one, else the
                best model available here, else approximate), "embedded" (only the photo's own map),
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
            subject: keep the whole subject sharp (our extension): the focal plane is the official
                median disparity under the subject's mask (from ``points``, or the salient-object
                mask when the server has a saliency model), the subject gets no blur, the
                background is blurred as without it.
            points: optional subject prompts ``[[x, y, label], ...]`` in the photo's pixels (label 1
                = the subject, 0 = not): the subject under them (Segment Anything, or GrabCut without
                its weights) gives the focus, as a click in the app. Used while focus_x and focus_y
                are empty.

        Returns:
            The (input, result) pair at the input's full resolution as PNGs, the colourised disparity
            map (near = warm) with the in-focus region outlined, and a JSON summary (sizes, focus,
            backend, depth source, timings, messages).
        """
        settings = AppSettings(
            image=image, focus_x=focus_x, focus_y=focus_y, k=k, backends=[backend], disparity_map=disparity_map,
            disparity_is_depth=disparity_is_depth, focal_range=focal_range, aperture=aperture, blades=blades,
            rotation_deg=rotation_deg, highlight_boost=highlight_boost, focus_parity=focus_parity,
            depth_model=depth_model, simulate_lq=simulate_lq, lq_preset=lq_preset, lq_seed=lq_seed,
            max_side=max_side, match_input_size=match_input_size, subject=bool(subject), points=points or None,
        )
        if settings.subject and not _has_subject(settings, handlers):
            raise gr.Error("subject=true needs a subject mask: pass points [[x, y, 1], ...] with focus_x and focus_y "
                           "empty (or run the server with a saliency model for automatic focus).",
                           title="No subject", print_exception=False)
        return handlers.api_render(settings, progress)

    return render


def _has_subject(settings: AppSettings, handlers: Handlers) -> bool:
    """Whether the call's focus gives a subject mask to keep sharp (bad focus input: let the render say)."""
    from ..errors import MagicBokehError

    try:
        return settings.keep_subject(handlers.sources, settings.focus())
    except MagicBokehError:
        return True
