"""Aperture and focus sweeps: one photo rendered at a series of K values or focal planes.

An **aperture sweep** keeps the focus fixed and steps the blur strength K evenly from 0 (no blur)
to ``k_max``, or renders one frame per multiple of a base K (``k_multiples``: 1, 2, 3 = "from 1x blur
to 3x blur", the supplement's Fig. 3; the frame at multiple 1 is exactly a render at the base K); a
**focus sweep** keeps K fixed and steps the focal plane evenly from the nearest
disparity in the photo's map (its maximum, 1 for a normalised map) to the farthest (its minimum,
0) — the supplement's §4.1 and §4.2 figures as an animation. Every frame is a normal
:func:`magicbokeh.pipeline.render` call on the same decoded photo, so the disparity is estimated
once (the core caches it per photo and depth source) and the diffusion backend reuses its cached
latents. Each frame is one :class:`~magicbokeh.request.RenderRequest`, rendered by the same road as a
single render (:func:`magicbokeh.pipeline.run`, or the app's GPU router).

Outputs (:func:`save_sweep`, chosen by the output path):

* ``.gif`` — an animated GIF (Pillow), looping, ``fps`` frames per second;
* ``.mp4`` — H.264 video through imageio + imageio-ffmpeg when installed;
* ``.png`` — a contact sheet: one horizontal strip when the frames together are at most
  :data:`SHEET_MAX_WIDTH_PX` wide, else a near-square grid (row by row, empty cells white);
* a folder (a path without a suffix, or an existing folder) — only the frames, as
  ``frame_000.png``, ``frame_001.png``, … in order.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import MagicBokehError
from .focus import check_k
from .images import to_uint8
from .notes import warning
from .output_paths import check_writable_folder
from .publish import publish_file, publish_folder
from .request import RenderRequest
from .settings import K_RANGE

logger = logging.getLogger(__name__)

SWEEP_KINDS = ("aperture", "focus")
#: Frame count limits (a sweep holds every frame in memory until it is written).
MIN_FRAMES = 2
MAX_FRAMES = 120
#: Largest total size of the frames in memory (8-bit RGB), bytes.
MAX_SWEEP_BYTES = 2 * 1024**3
#: A PNG contact sheet is one horizontal strip up to this width (pixels), else a grid.
SHEET_MAX_WIDTH_PX = 4096
#: Default playback speed of GIF and MP4 sweeps, frames per second.
DEFAULT_FPS = 6.0
#: Default frame count of a sweep.
DEFAULT_FRAMES = 8
OUTPUT_SUFFIXES = (".gif", ".mp4", ".png")
FRAME_PATTERN = re.compile(r"frame_\d+\.png")
MP4_MISSING = (
    "writing .mp4 needs imageio with its ffmpeg plugin (pip install \"imageio[ffmpeg]\"); "
    "or write a .gif, a .png strip or a folder of frames instead."
)

#: progress(fraction in [0, 1], stage description)
ProgressCallback = Callable[[float, str], None]


@dataclass
class SweepResult:
    """The frames of a sweep and how they were made.

    Attributes:
        kind: "aperture" or "focus".
        values: per frame, K (aperture sweep, in [0, 32]) or the focal-plane disparity (focus
            sweep, in [0, 1], 1 = nearest).
        frames: per frame, (H, W, 3) uint8 RGB at the input's size.
        k: per frame, the blur strength used.
        focus_disparity: per frame, the focal-plane disparity used.
        backend: the backend that rendered the frames.
        depth_source: where the disparity came from.
        approximate_depth: True when no real depth was available.
        messages: notes (depth fallback, ignored options...), each once.
        seconds: wall time of the whole sweep.
        k_multiples: per frame, the multiple of the base K (aperture sweep by multiples), else None.
    """

    kind: str
    values: list[float]
    frames: list[np.ndarray]
    k: list[float]
    focus_disparity: list[float]
    backend: str
    depth_source: str
    approximate_depth: bool
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    k_multiples: list[float] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame, pixels."""
        return self.frames[0].shape[1], self.frames[0].shape[0]

    def info(self) -> dict[str, Any]:
        """JSON-serialisable summary of the sweep."""
        w, h = self.size
        return {
            "kind": self.kind,
            "frames": len(self.frames),
            "frame_size": [w, h],
            "values": [round(v, 6) for v in self.values],
            "K": [round(v, 6) for v in self.k],
            "focus_disparity": [round(v, 6) for v in self.focus_disparity],
            "backend": self.backend,
            "depth_source": self.depth_source,
            "approximate_depth": self.approximate_depth,
            "messages": list(self.messages),
            "seconds": round(self.seconds, 3),
            "K_multiples": None if self.k_multiples is None else [round(m, 6) for m in self.k_multiples],
        }


def check_frames(frames: Any) -> int:
    """Validate a frame count: an integer in [MIN_FRAMES, MAX_FRAMES]."""
    try:
        n = int(frames)
        if n != float(frames):
            raise ValueError
    except (TypeError, ValueError):
        raise MagicBokehError(f"the frame count must be a whole number; got {frames!r}.") from None
    if not (MIN_FRAMES <= n <= MAX_FRAMES):
        raise MagicBokehError(
            f"a sweep needs between {MIN_FRAMES} and {MAX_FRAMES} frames; got {n}."
        )
    return n


def sweep_values(kind: str, frames: int, *, k_max: float = 32.0,
                 disparity_range: tuple[float, float] = (0.0, 1.0)) -> list[float]:
    """The swept value of each frame, evenly spaced.

    Args:
        kind: "aperture" (K from 0 to ``k_max``) or "focus" (focal-plane disparity from
            ``disparity_range[1]``, the nearest, down to ``disparity_range[0]``, the farthest).
        frames: frame count, at least 2.
        k_max: largest K of an aperture sweep, in (0, 32].
        disparity_range: (min, max) disparity of the photo's map, each in [0, 1].
    """
    n = check_frames(frames)
    if kind == "aperture":
        k_max = check_k(k_max)
        if k_max <= 0:
            raise MagicBokehError("an aperture sweep needs a largest K above 0 (at most 32).")
        return [float(v) for v in np.linspace(0.0, k_max, n)]
    if kind == "focus":
        lo, hi = (float(np.clip(v, 0.0, 1.0)) for v in disparity_range)
        return [float(v) for v in np.linspace(hi, lo, n)]
    raise MagicBokehError(f"unknown sweep kind {kind!r}; choose {' or '.join(SWEEP_KINDS)}.")


def parse_k_multiples(text: str) -> list[float]:
    """``"1,2,3"`` (commas and/or spaces; an ``x`` after a number is allowed: ``"1x 2x 3x"``) -> floats."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        values = [float(p[:-1] if p.lower().endswith("x") else p) for p in parts]
    except ValueError:
        raise MagicBokehError(f"K multiples must be numbers separated by commas, e.g. 1,2,3; got {text!r}.") from None
    return check_k_multiples(values)


def check_k_multiples(multiples: Sequence[float]) -> list[float]:
    """Validate the multiples of an aperture sweep by multiples: 2-120 finite numbers >= 0, as floats."""
    values = [float(m) for m in multiples]
    if not MIN_FRAMES <= len(values) <= MAX_FRAMES:
        raise MagicBokehError(f"an aperture sweep by multiples needs {MIN_FRAMES} to {MAX_FRAMES} multiples "
                              f"(one frame each); got {len(values)}.")
    bad = [m for m in values if not np.isfinite(m) or m < 0]
    if bad:
        raise MagicBokehError(f"K multiples must be finite numbers >= 0 (1 = the base K); got {bad[0]:g}.")
    return values


def aperture_multiples(k_base: float, multiples: Sequence[float]) -> list[float]:
    """K of each frame of an aperture sweep by multiples: ``k_base * m``, each in [0, 32].

    Args:
        k_base: the base blur strength K, in (0, 32]; multiple 1 renders exactly this K.
        multiples: 2-120 numbers >= 0, in frame order (e.g. 1, 2, 3: from 1x to 3x the base blur).
    """
    values = check_k_multiples(multiples)
    k_base = check_k(k_base)
    if k_base <= 0:
        raise MagicBokehError("an aperture sweep by multiples needs a base K above 0 (--K).")
    top = max(values)
    if k_base * top > K_RANGE[1]:
        raise MagicBokehError(
            f"K {k_base:g} x {top:g} = {k_base * top:g} is above the largest K {K_RANGE[1]:g}; use a base K "
            f"of at most {K_RANGE[1] / top:.4g} or smaller multiples."
        )
    return [k_base * m for m in values]


def render_sweep(
    request: RenderRequest,
    *,
    kind: str = "aperture",
    frames: int = 8,
    k_max: float = 32.0,
    k_multiples: Sequence[float] | None = None,
    progress: ProgressCallback | None = None,
    render: Callable[[RenderRequest, ProgressCallback | None], Any] | None = None,
) -> SweepResult:
    """Render a sweep of one photo: one :class:`~magicbokeh.request.RenderRequest` per frame.

    Args:
        request: the photo, depth source, focus and settings, as for a single render. An aperture
            sweep keeps ``request.focus`` (default automatic); a focus sweep moves the focus itself,
            so a focus given there is ignored (with a note), and ``settings.k`` is its K.
        kind: "aperture" (K from 0 to ``k_max`` at the fixed focus) or "focus" (focal plane from
            the nearest to the farthest disparity at the fixed ``settings.k``).
        frames: frame count in [2, 120].
        k_max: largest K of an aperture sweep, in (0, 32].
        k_multiples: aperture sweep only: one frame per multiple of the base K ``settings.k``
            (K = ``settings.k * m``), instead of ``frames`` and ``k_max``; see :func:`aperture_multiples`.
        progress: optional ``progress(fraction, stage)`` callback.
        render: renders one frame's request (default :func:`magicbokeh.pipeline.run`; the app passes
            :func:`magicbokeh.zerogpu.render_request`, the same road as its single renders).

    Raises:
        MagicBokehError: bad input (frame count, K, kind, photo, depth) or an unavailable backend.
    """
    from .depth.from_photo import open_photo
    from .pipeline import check_backend, photo_disparity, run
    from .request import Focus, RenderSettings

    render = render or run
    t_start = time.perf_counter()
    if kind not in SWEEP_KINDS:
        raise MagicBokehError(f"unknown sweep kind {kind!r}; choose {' or '.join(SWEEP_KINDS)}.")
    if k_multiples is not None and kind != "aperture":
        raise MagicBokehError("K multiples apply to an aperture sweep; a focus sweep keeps one K.")
    multiples = None if k_multiples is None else check_k_multiples(k_multiples)
    n = check_frames(frames) if multiples is None else len(multiples)
    settings = (request.settings or RenderSettings()).checked()
    focus = request.focus or Focus.auto()
    photo = open_photo(request.image)  # a phone photo keeps its own depth for every frame
    w, h = photo.size
    if n * w * h * 3 > MAX_SWEEP_BYTES:
        raise MagicBokehError(
            f"{n} frames of {w}x{h} need {n * w * h * 3 / 1e9:.1f} GB of memory (limit "
            f"{MAX_SWEEP_BYTES / 1e9:.1f} GB); use fewer frames or a smaller photo."
        )
    check_backend(settings)  # before any depth is estimated

    base = replace(request, image=photo, settings=settings, focus=focus)
    messages: list[str] = []
    if kind == "aperture":
        values = (sweep_values(kind, n, k_max=k_max) if multiples is None
                  else aperture_multiples(settings.k, multiples))
        plans = [replace(base, settings=replace(settings, k=v)) for v in values]
    else:
        if focus.kind != "auto":
            messages.append(f"a focus sweep moves the focus itself; the given focus ({focus.describe()}) "
                            "is not used.")
        # The same call render() makes for a disparity focus, so the frames hit this cache entry.
        depth_result = photo_disparity(photo, request.depth, depth_is_depth=request.depth_is_depth,
                                       progress=progress, depth_input_size=request.depth_input_size,
                                       depth_device=request.depth_device, depth_model=request.depth_model)
        d = depth_result.disparity
        values = sweep_values(kind, n, disparity_range=(float(d.min()), float(d.max())))
        plans = [replace(base, focus=Focus.disparity(v)) for v in values]

    out_frames: list[np.ndarray] = []
    ks: list[float] = []
    focuses: list[float] = []
    first = None
    for i, frame in enumerate(plans):
        label = f"frame {i + 1}/{n}"
        if progress:
            progress(i / n, label)
        frame_progress = (_frame_progress(progress, i, n, label)
                          if progress is not None and frame.settings.backend != "classical" else None)
        result = render(frame, frame_progress)
        first = first or result
        out_frames.append(to_uint8(result.image))
        ks.append(float(frame.settings.k))
        focuses.append(float(result.focus_disparity))
        for message in result.messages:
            if message not in messages:
                messages.append(message)
    if progress:
        progress(1.0, "sweep rendered")
    assert first is not None
    if first.approximate_depth:
        messages.append(warning(
            "this sweep uses approximate depth (no depth model or map), so the blur follows a "
            "rough stand-in for the scene; supply a disparity map for a faithful sweep."))
    return SweepResult(
        kind=kind,
        values=values,
        frames=out_frames,
        k=ks,
        focus_disparity=focuses,
        backend=first.backend,
        depth_source=first.depth_source,
        approximate_depth=first.approximate_depth,
        messages=messages,
        seconds=time.perf_counter() - t_start,
        k_multiples=multiples,
    )


def _frame_progress(progress: ProgressCallback, index: int, count: int, label: str) -> ProgressCallback:
    """A render's progress(fraction, stage) mapped onto frame ``index`` of ``count``."""
    def callback(fraction: float, stage: str) -> None:
        progress((index + min(max(float(fraction), 0.0), 1.0)) / count, f"{label}: {stage}")
    return callback


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def output_kind(path: str | Path) -> str:
    """"gif", "mp4", "png" or "folder" for an output path (an existing folder is a folder)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == "":
        return "folder"
    if suffix in OUTPUT_SUFFIXES:
        return suffix[1:]
    raise MagicBokehError(
        f"cannot write a sweep to {str(path)!r}: use a .gif, .mp4 or .png file, or a folder "
        "(a name without a suffix) for the frames as PNGs."
    )


def _mp4_writer_available() -> bool:
    """Whether imageio and its ffmpeg plugin (which bundles an ffmpeg binary) are installed."""
    from importlib.util import find_spec

    return find_spec("imageio") is not None and find_spec("imageio_ffmpeg") is not None


def prepare_output(path: str | Path) -> str:
    """Check, before any rendering, that a sweep can be written to ``path``; returns its kind.

    Creates missing parent folders (or the output folder). A frames folder may be new, empty or
    hold frames of an earlier sweep (they are replaced); any other file in it is refused, so the
    folder holds only the frames.
    """
    path = Path(path).expanduser()
    kind = output_kind(path)
    if kind == "mp4" and not _mp4_writer_available():
        raise MagicBokehError(MP4_MISSING)
    if kind == "folder":
        if path.exists() and not path.is_dir():
            raise MagicBokehError(f"cannot write frames to {str(path)!r}: it is a file, not a folder.")
        cwd = Path.cwd().resolve()
        if path.resolve() == cwd or path.resolve() in cwd.parents:
            raise MagicBokehError(f"cannot write frames to {str(path)!r}: it is the current folder; "
                                  "name a new folder for the frames.")
        check_writable_folder(path, "the frames")
        others = sorted(p.name for p in path.iterdir() if not FRAME_PATTERN.fullmatch(p.name))
        if others:
            raise MagicBokehError(
                f"the folder {str(path)!r} already holds other files ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}); choose a new or empty folder: it will hold "
                "only the frames."
            )
    else:
        check_writable_folder(path.parent, path.name)
    return kind


def contact_sheet(frames: Sequence[np.ndarray], *, max_width: int = SHEET_MAX_WIDTH_PX) -> np.ndarray:
    """All frames in one image, in order: a horizontal strip, or a grid when that is too wide.

    Args:
        frames: (H, W, 3) uint8 frames of one size.
        max_width: widest strip allowed, pixels; wider sweeps become a grid of ``ceil(sqrt(N))``
            columns, filled row by row, with empty cells white.

    Returns:
        (rows * H, columns * W, 3) uint8.
    """
    if not frames:
        raise MagicBokehError("a sweep has no frames.")
    h, w = frames[0].shape[:2]
    n = len(frames)
    cols = n if n * w <= max_width else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    return sheet


def write_gif(frames: Sequence[np.ndarray], path: str | Path, *, fps: float = DEFAULT_FPS) -> Path:
    """An endlessly looping animated GIF (adaptive palette per frame).

    Pillow merges consecutive frames that are pixel-identical into one longer frame.
    """
    from PIL import Image

    path = Path(path)
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    duration = max(int(round(1000.0 / check_fps(fps))), 20)
    try:
        with publish_file(path) as tmp:  # a failed write never leaves a truncated GIF
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=duration, loop=0)
    except OSError as exc:
        raise MagicBokehError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return path


def write_mp4(frames: Sequence[np.ndarray], path: str | Path, *, fps: float = DEFAULT_FPS) -> Path:
    """H.264 MP4 (yuv420p, so odd sizes are padded by one edge pixel) via imageio-ffmpeg."""
    if not _mp4_writer_available():
        raise MagicBokehError(MP4_MISSING)
    import imageio.v2 as imageio

    path = Path(path)
    h, w = frames[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    try:
        with publish_file(path) as tmp:
            writer = imageio.get_writer(str(tmp), format="FFMPEG", mode="I", fps=check_fps(fps),
                                        codec="libx264", pixelformat="yuv420p", macro_block_size=2,
                                        quality=8)
            with writer:
                for frame in frames:
                    writer.append_data(np.pad(frame, pad, mode="edge") if any(p[1] for p in pad) else frame)
    except (OSError, RuntimeError, ValueError) as exc:
        raise MagicBokehError(f"cannot write {str(path)!r}: {exc}") from None
    return path


def write_frames(frames: Sequence[np.ndarray], folder: str | Path) -> list[Path]:
    """The frames as ``frame_000.png``, ``frame_001.png``, … (zero-padded to at least 3 digits).

    The folder is published whole (:func:`magicbokeh.publish.publish_folder`): it replaces an earlier
    sweep's frames only once every new frame is written, so it holds exactly these frames, or,
    after a failure, exactly the previous ones.
    """
    from .images import save_png

    folder = Path(folder)
    digits = max(3, len(str(len(frames) - 1)))
    names = [f"frame_{i:0{digits}d}.png" for i in range(len(frames))]
    with publish_folder(folder) as tmp:
        for name, frame in zip(names, frames):
            save_png(tmp / name, frame.astype(np.float32) / 255.0)
    return [folder / name for name in names]


def save_sweep(frames: Sequence[np.ndarray], path: str | Path, *, fps: float = DEFAULT_FPS) -> list[Path]:
    """Write a sweep by the output's kind (see the module docstring); returns the files written."""
    from .images import save_png

    kind = prepare_output(path)
    path = Path(path).expanduser()
    if kind == "gif":
        return [write_gif(frames, path, fps=fps)]
    if kind == "mp4":
        return [write_mp4(frames, path, fps=fps)]
    if kind == "png":
        return [save_png(path, contact_sheet(frames).astype(np.float32) / 255.0)]
    return write_frames(frames, path)


def check_fps(fps: float) -> float:
    """Validate a playback speed in [0.1, 60] frames per second."""
    fps = float(fps)
    if not np.isfinite(fps) or not (0.1 <= fps <= 60.0):
        raise MagicBokehError(f"fps={fps:g} is outside [0.1, 60] frames per second.")
    return fps


def default_output_name(kind: str, stem: str = "sweep") -> str:
    """A safe file stem for a sweep, e.g. ``photo_aperture_sweep``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "sweep"
    return f"{safe}_{kind}_sweep"


__all__ = [
    "SWEEP_KINDS", "MIN_FRAMES", "MAX_FRAMES", "SweepResult", "check_frames", "sweep_values",
    "parse_k_multiples", "check_k_multiples", "aperture_multiples",
    "render_sweep", "output_kind", "prepare_output", "contact_sheet", "write_gif", "write_mp4",
    "write_frames", "save_sweep", "default_output_name",
]
