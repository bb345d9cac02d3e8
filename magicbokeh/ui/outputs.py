"""The files a response returns: every image the app shows or offers is a file of its own.

Why files: Gradio 6.31 stores a returned array or PIL image under a content-hashed cache path and
rewrites that file in place (``save_pil_to_cache`` -> ``write_bytes``), so two identical responses
at once (visitors clicking the same example) can truncate a file that another response is still
streaming. A returned *path* is copied into the cache by ``save_file_to_cache`` instead, which
stages the copy under a temporary name, renames it into place and never rewrites an existing copy.
So each response writes its images atomically (:mod:`magicbokeh.publish`) into a folder of its own
and returns their paths. Folders older than :data:`MAX_AGE_S` are removed when a new one is made.

Sweeps: the page shows a light preview (frames downscaled to :data:`PREVIEW_MAX_SIDE` px, animated
WebP; a contact sheet of :data:`THUMB_MAX_SIDE` px thumbnails) and offers the full-resolution
animation as MP4 (H.264 through imageio-ffmpeg) or, without that encoder, as animated WebP (Pillow).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import MagicBokehError
from ..images import save_png
from ..publish import publish_file
from ..sweep import DEFAULT_FPS, contact_sheet, write_mp4

#: Where the per-response folders live, and how long they are kept (seconds).
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "magicbokeh-app"
MAX_AGE_S = 3600.0
#: Long side (px) of the animated sweep preview's frames, and of the contact sheet's thumbnails.
PREVIEW_MAX_SIDE = 480
THUMB_MAX_SIDE = 240
#: Lossy WebP quality of the preview (0-100) and of the full-resolution WebP download.
PREVIEW_QUALITY = 75
DOWNLOAD_WEBP_QUALITY = 90


def new_response_folder() -> Path:
    """A fresh folder for one response's files; folders older than :data:`MAX_AGE_S` are removed."""
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUTPUT_ROOT.iterdir():
        try:
            if now - old.stat().st_mtime > MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=OUTPUT_ROOT))


def _as_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 or float [0, 1] pixels as float32 [0, 1] (what ``save_png`` takes)."""
    arr = np.asarray(rgb)
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def write_png(folder: Path, name: str, rgb: np.ndarray) -> str:
    """``rgb`` (uint8, or float in [0, 1]) as ``folder/name`` (a PNG), published atomically; its path."""
    return str(save_png(Path(folder) / name, _as_float(rgb)))


def downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    """A uint8 frame with its long side at most ``max_side`` px (area-averaged; smaller frames as is)."""
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(frame)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(size, Image.Resampling.BOX))


def write_webp_animation(frames: Sequence[np.ndarray], path: Path, *, quality: int,
                         fps: float = DEFAULT_FPS) -> str:
    """uint8 frames as a looping lossy animated WebP (Pillow), published atomically; its path."""
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    try:
        with publish_file(path) as tmp:
            images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:], loop=0,
                           duration=max(20, round(1000.0 / fps)), quality=quality, method=4)
    except OSError as exc:
        raise MagicBokehError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return str(path)


def mp4_available() -> bool:
    """Whether the MP4 encoder (imageio with the imageio-ffmpeg plugin) is installed."""
    return find_spec("imageio") is not None and find_spec("imageio_ffmpeg") is not None


def sweep_files(frames: Sequence[np.ndarray], folder: Path, stem: str) -> tuple[str, str, str]:
    """(animated preview, contact-sheet preview, full-resolution download) of a sweep's uint8 frames.

    The previews are bounded by :data:`PREVIEW_MAX_SIDE` and :data:`THUMB_MAX_SIDE` whatever the
    photo's size; the download is MP4 when :func:`mp4_available`, else animated WebP.
    """
    folder = Path(folder)
    preview = write_webp_animation([downscale(f, PREVIEW_MAX_SIDE) for f in frames],
                                   folder / f"{stem}_preview.webp", quality=PREVIEW_QUALITY)
    sheet = write_png(folder, f"{stem}_frames.png", contact_sheet([downscale(f, THUMB_MAX_SIDE) for f in frames]))
    if mp4_available():
        download = str(write_mp4(frames, folder / f"{stem}.mp4"))
    else:
        download = write_webp_animation(frames, folder / f"{stem}.webp", quality=DOWNLOAD_WEBP_QUALITY)
    return preview, sheet, download
