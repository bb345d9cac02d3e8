"""Glue for the Gradio app that is not UI: the depth-model menu and the low-quality simulation.

Kept out of ``app.py`` so the app only wires components, and importable without Gradio.
"""

from __future__ import annotations

from typing import Any

from .lru import LruCache
from .errors import MagicBokehError
from .depth.from_photo import open_photo
from .images import Photo, photo_key

#: Menu values besides the names in :data:`magicbokeh.depth.DEPTH_MODELS`.
DEPTH_AUTO = "auto"
DEPTH_APPROXIMATE = "approximate"
DEPTH_UPLOADED = "uploaded"
#: The photo's own depth map (phone portraits; see magicbokeh.depth.from_photo).
DEPTH_EMBEDDED = "embedded"
#: Resolution loss of the simulated capture (Real-ESRGAN's x4 setting).
LQ_SCALE = 4.0


def depth_menu(*, with_status: bool = True) -> list[tuple[str, str]]:
    """(label, value) pairs for the depth selector, every model labelled with its licence.

    Values: ``"auto"``, ``"embedded"`` (the photo's own map), the names in ``DEPTH_MODELS`` (``dadepth``, ``small``, ``base``,
    ``large``), ``"approximate"`` and ``"uploaded"``. With ``with_status``, models whose weights
    cannot be had here (checked without loading or downloading) say "not available here".
    """
    from .depth import DEPTH_MODELS, depth_status

    items = [("Automatic — the photo's own depth map when it has one, else DA depth on a GPU when "
              "downloaded, else Depth Anything V2 Small; approximate when offline", DEPTH_AUTO),
             ("From the photo — the depth map an iPhone portrait HEIC or a Google Camera JPEG carries",
              DEPTH_EMBEDDED)]
    for name, model in DEPTH_MODELS.items():
        label = f"{model.label} · {model.licence}"
        if with_status and not depth_status(name)[0]:
            label += " · not available here"
        items.append((label, name))
    items.append(("Approximate — no model, no weights (subject cut-out + ground ramp)", DEPTH_APPROXIMATE))
    items.append(("Uploaded map — the file under “Disparity map”", DEPTH_UPLOADED))
    return items


def depth_spec(choice: str | None, disparity_map: str | None) -> str:
    """The core's ``depth`` argument for a menu value and an optional uploaded map path.

    An uploaded map is used with "Automatic" or "Uploaded map"; an explicit model or
    "Approximate" wins over it. Raises MagicBokehError for "Uploaded map" without a file or an
    unknown value.
    """
    from .depth import DEPTH_MODELS

    choice = choice or DEPTH_AUTO
    if choice == DEPTH_UPLOADED:
        if not disparity_map:
            raise MagicBokehError("“Uploaded map” is selected but no disparity map is uploaded; add one "
                                  "under Advanced › Disparity map, or choose another depth source.")
        return disparity_map
    if choice == DEPTH_AUTO:
        return disparity_map or DEPTH_AUTO
    if choice in (DEPTH_APPROXIMATE, DEPTH_EMBEDDED) or choice in DEPTH_MODELS:
        return choice
    raise MagicBokehError(f"unknown depth source {choice!r}; choose one of: "
                          f"{', '.join([DEPTH_AUTO, DEPTH_EMBEDDED, *DEPTH_MODELS, DEPTH_APPROXIMATE, DEPTH_UPLOADED])}.")


def depth_models_markdown() -> str:
    """Markdown table rows (name, source, licence, here?) for the "Models and licences" panel."""
    from .depth import DEPTH_MODELS, depth_status

    rows = []
    for name, model in DEPTH_MODELS.items():
        ok = depth_status(name)[0]
        source = "`LinxiaoShi/Magicbokeh` `DAdepth.pth`" if name == "dadepth" else f"`{model.source}`"
        rows.append(f"| Depth: {model.label} (`{name}`) | {source} | {model.licence} | "
                    f"{'✓ ready' if ok else '✗ not downloaded'} |")
    rows.append("| Depth: approximate (`approximate`) | built in, no weights | Apache-2.0 (this project) | ✓ ready |")
    return "\n".join(rows)


_LQ_CACHE: LruCache[Photo] = LruCache(4)


def check_seed(seed: Any) -> int:
    """A degradation seed as an int >= 0 (None means 0)."""
    if seed is None:
        return 0
    try:
        value = int(seed)
        if value != float(seed):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise MagicBokehError(f"the seed must be a whole number >= 0; got {seed!r}.") from None
    if value < 0:
        raise MagicBokehError(f"the seed must be a whole number >= 0; got {value}.")
    return value


def simulate_low_quality(image: Any, *, preset: str = "realesrgan", seed: Any = 0,
                         scale: float = LQ_SCALE) -> Photo:
    """The photo as a low-quality capture (``magicbokeh.degradation.degrade``), at its own size.

    Args:
        image: the clean photo (anything :func:`magicbokeh.depth.from_photo.open_photo` reads).
        preset: "realesrgan" (Real-ESRGAN second-order degradation) or "zoom" (digital zoom).
        seed: whole number >= 0; the same photo, preset, scale and seed give identical pixels.
        scale: resolution loss in [1, 16] (4 = Real-ESRGAN x4).

    Returns:
        A :class:`Photo` with the degraded (H, W, 3) float32 RGB in [0, 1] and a note in
        ``messages``. The last few results are cached, so re-rendering (a new K or focus) does not
        degrade again.
    """
    from .degradation import degrade

    seed = check_seed(seed)
    photo = open_photo(image)  # a phone portrait file: the original it carries, not its blurred primary
    def simulate() -> Photo:
        rgb = degrade(photo.rgb, preset=preset, scale=scale, seed=seed)
        note = f"simulated low-quality capture: {preset} x{scale:g}, seed {seed}"
        return Photo(rgb=rgb, key=photo_key(rgb), messages=[*photo.messages, note], name=photo.name)

    return _LQ_CACHE.get_or_make((photo.key, preset, float(scale), seed), simulate)
