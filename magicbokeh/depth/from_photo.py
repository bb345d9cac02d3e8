"""The depth a photo file carries, as a depth source: open a photo once, keep its embedded depth.

A phone's portrait photo (iPhone HEIC, Google Camera GDepth, Dynamic Depth; see
docs/phone-depth.md) holds a depth map, the pixels to render (for GDepth the unblurred original,
not the phone's blurred primary) and where the camera focused. :func:`open_photo` decodes a photo
file and returns a :class:`PhotoWithDepth` that keeps all of it, so the depth travels with the
photo through a request (across the ZeroGPU worker too: it is a plain picklable dataclass).

The depth spec ``"embedded"`` asks for this map; ``"auto"`` uses it when the photo has one and
otherwise (or when the file's depth is malformed) falls back to the next source with a note.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..lru import LruCache
from ..errors import MagicBokehError
from ..images import Photo, load_photo
from ..notes import warning
from .embedded import EmbeddedDepth, EmbeddedDepthError, read_embedded_depth
from .estimators import DepthResult

#: The depth spec (CLI ``--depth embedded``, the app's "From the photo") of the photo's own depth.
EMBEDDED = "embedded"
#: The depth-source label prefix; the format's name follows.
EMBEDDED_LABEL = "from the photo"

_CACHE: LruCache[Any] = LruCache(2)  # a 12 MP photo and its maps are ~200 MB; re-renders of a file hit this


@dataclass
class PhotoWithDepth(Photo):
    """A decoded photo file and the depth it carries.

    Attributes:
        embedded: the file's depth (its ``photo`` is this photo), or None.
        embedded_error: why the file's announced depth cannot be used (malformed, hostile or
            unsupported), or None; the photo is then the file's primary image.
    """

    embedded: EmbeddedDepth | None = None
    embedded_error: str | None = None


def embedded_of(photo: Photo) -> EmbeddedDepth | None:
    """The depth a decoded photo carries (None for any other photo)."""
    return getattr(photo, "embedded", None)


def _read(data: bytes, name: str) -> EmbeddedDepth | None | str:
    """read_embedded_depth of a file's bytes, cached by content: the info, None, or the error text."""
    def read() -> EmbeddedDepth | None | str:
        try:
            return read_embedded_depth(data, name=name)
        except EmbeddedDepthError as exc:
            return str(exc)

    return _CACHE.get_or_make(hashlib.blake2b(data, digest_size=16).hexdigest(), read)


def open_photo(source: Any, *, name: str | None = None) -> Photo:
    """Decode a photo like :func:`magicbokeh.images.load_photo`, keeping the depth its file carries.

    Args:
        source: a path or the file's bytes (read for embedded depth), or anything ``load_photo``
            takes (a decoded image has lost its metadata: decoded as is).
        name: label of the photo (default: the file stem).

    Returns:
        A :class:`PhotoWithDepth` for a file that carries depth (its pixels are the ones to
        render: the original, not a phone's blurred primary) or whose depth is malformed (with
        ``embedded_error``); else the plain :class:`~magicbokeh.images.Photo`.

    Raises:
        MagicBokehError: the photo itself cannot be decoded (as ``load_photo``).
    """
    if isinstance(source, Photo) or not isinstance(source, (str, Path, bytes, bytearray)):
        return load_photo(source, name=name)
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            return load_photo(source, name=name)  # its message names the missing file
        name = name or path.stem
        try:
            data = path.read_bytes()
        except OSError:
            return load_photo(source, name=name)
    else:
        data = bytes(source)
    found = _read(data, name or "image")
    if isinstance(found, EmbeddedDepth):
        p = found.photo
        return PhotoWithDepth(rgb=p.rgb, key=p.key, messages=list(p.messages), name=name or p.name,
                              embedded=found)
    photo = load_photo(data, name=name)
    if isinstance(found, str):
        return PhotoWithDepth(rgb=photo.rgb, key=photo.key, messages=photo.messages, name=photo.name,
                              embedded_error=found)
    return photo


def open_upload(upload: Any) -> Photo:
    """An uploaded photo (path, ``{"path": ...}``, bytes, file object) through :func:`open_photo`.

    Like :func:`magicbokeh.processing.decode_upload` (whose messages name the uploaded file, not the
    server's temporary path), but the file's own depth, original and focus hint are kept.
    """
    from ..processing import decode_upload

    path = upload.get("path") if isinstance(upload, dict) else upload
    if not isinstance(path, (str, Path, bytes, bytearray)):
        path = getattr(path, "path", None) or getattr(path, "name", None)
    if isinstance(path, (bytes, bytearray)) and path:
        return open_photo(bytes(path), name="upload")
    if isinstance(path, (str, Path)) and Path(path).is_file() and Path(path).stat().st_size > 0:
        file = Path(path)
        photo = open_photo(file.read_bytes(), name=file.name)
        photo.name = file.stem
        return photo
    return decode_upload(upload)  # missing, empty or unusual: its message


def uses_embedded(photo: Photo, depth: Any) -> bool:
    """True when ``depth`` asks for the photo's own map and the photo has one.

    ``"embedded"`` without a usable map raises MagicBokehError (the reader's message, or "no depth").
    """
    if not isinstance(depth, str) or depth not in ("auto", EMBEDDED):
        return False
    if embedded_of(photo) is not None:
        return True
    if depth == EMBEDDED:
        error = getattr(photo, "embedded_error", None)
        raise MagicBokehError(
            f"the photo's depth cannot be used: {error}" if error else
            "this photo carries no depth map (an iPhone portrait HEIC, a Google Camera Lens Blur or "
            "Dynamic Depth JPEG does); choose another depth source.")
    return False


def fallback_note(photo: Photo, depth: Any) -> str | None:
    """The warning for ``depth="auto"`` when the file announced depth that cannot be used."""
    error = getattr(photo, "embedded_error", None)
    if isinstance(depth, str) and depth == "auto" and error:
        return warning(f"The photo's own depth map is not used: {error} Using the next depth source.")
    return None


def embedded_depth_result(photo: Photo) -> DepthResult:
    """The photo's own disparity as a DepthResult at ``photo``'s size (area-resized if downscaled)."""
    from ..processing import resize_scalar_map

    info = embedded_of(photo)
    if info is None:
        raise MagicBokehError("this photo carries no depth map.")
    w, h = photo.size
    disparity = info.disparity if info.disparity.shape == (h, w) else resize_scalar_map(info.disparity, w, h)
    notes = tuple(m for m in info.messages if not m.startswith("focus"))  # focus notes: the pipeline's
    return DepthResult(np.ascontiguousarray(disparity, dtype=np.float32),
                       source=f"{EMBEDDED_LABEL}: {info.format_name}", messages=notes)


def focus_hint(photo: Photo) -> tuple[tuple[float, float] | None, str | None]:
    """(x, y) pixel of ``photo`` where the camera focused, and the hint's source; (None, None) without."""
    info = embedded_of(photo)
    if info is None or info.focus_point is None:
        return None, None
    w, h = photo.size
    fx, fy = info.focus_point
    return (min(fx * w, w - 1.0), min(fy * h, h - 1.0)), info.focus_source


def resized(photo: Photo, rgb: np.ndarray, key: str) -> Photo:
    """``photo`` at another size (the processing size), still carrying its depth."""
    if isinstance(photo, PhotoWithDepth):
        return PhotoWithDepth(rgb=rgb, key=key, messages=[], name=photo.name, embedded=photo.embedded,
                              embedded_error=photo.embedded_error)
    return Photo(rgb=rgb, key=key, messages=[], name=photo.name)


def focus_note(info: EmbeddedDepth, point: tuple[int, int] | None, exact: float | None) -> str:
    """The status line of a focus preset from the photo."""
    where = f"pixel ({point[0]}, {point[1]})" if point is not None else "the recorded focal plane"
    what = (f"focal distance {info.focus_distance:g} (disparity {exact:.3f}) at {where}" if exact is not None
            else f"{where}, where the camera focused")
    source = info.focus_source or info.format_name
    return f"Focus from the photo ({source}): {what} (a chosen focus point overrides it)."


def report(photo: Photo, *, depth_used: bool, focus_used: bool) -> dict[str, Any] | None:
    """JSON-ready facts of the photo's own depth for ``RenderResult.info()``, or None."""
    info = embedded_of(photo)
    if info is not None:
        return {**info.summary(), "depth_used": depth_used, "focus_used": focus_used}
    error = getattr(photo, "embedded_error", None)
    return {"error": error, "depth_used": False, "focus_used": False} if error else None


__all__ = [
    "EMBEDDED", "EMBEDDED_LABEL", "PhotoWithDepth", "embedded_depth_result", "embedded_of",
    "fallback_note", "focus_hint", "focus_note", "open_photo", "open_upload", "report", "resized", "uses_embedded",
]
