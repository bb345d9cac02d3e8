"""One entry point: the depth a photo carries (HEIC depth image, GDepth or Dynamic Depth), or None."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from ...images import looks_like_heif
from .dynamic_depth import has_dynamic_depth, read_dynamic_depth
from .gdepth import has_gdepth, read_gdepth
from .heic import read_heic_depth
from .jpeg import is_jpeg, read_jpeg_metadata
from .types import EmbeddedDepth, EmbeddedDepthError
from .xmp import XMP_NOTE, assemble_extended, parse_packet, simple_properties

GOOGLE_PHOTOS_NS = "{http://ns.google.com/photos/"


def _jpeg_orientation(data: bytes) -> int:
    try:
        return int(Image.open(io.BytesIO(data)).getexif().get(0x0112, 1) or 1)
    except Exception:  # malformed EXIF: treat as upright, like images.upright_pil
        return 1


def _read_jpeg(data: bytes, name: str, guided: bool) -> EmbeddedDepth | None:
    meta = read_jpeg_metadata(data)
    if meta.xmp is None:
        return None
    main = parse_packet(meta.xmp, "XMP packet")
    props = simple_properties(main)
    roots = [main]
    guid = props.get(f"{{{XMP_NOTE}}}HasExtendedXMP")
    if guid:
        google = any(k.startswith(GOOGLE_PHOTOS_NS) for k in props)
        try:
            extended = parse_packet(assemble_extended(meta.extended, guid), "Extended XMP packet")
        except EmbeddedDepthError:
            if google or has_gdepth(props) or has_dynamic_depth(roots):
                raise
            return None  # someone else's Extended XMP (e.g. editing history): not a depth photo
        roots.append(extended)
        for key, value in simple_properties(extended).items():
            props.setdefault(key, value)
    orientation = _jpeg_orientation(data)
    if has_dynamic_depth(roots):
        return read_dynamic_depth(roots, props, data, name, orientation, guided=guided)
    if has_gdepth(props):
        return read_gdepth(props, data, name, orientation, guided=guided)
    return None


def read_embedded_depth(
    source: str | Path | bytes, *, name: str | None = None, guided: bool = True
) -> EmbeddedDepth | None:
    """The depth stored in a photo file, converted to normalised disparity at the photo's size.

    Args:
        source: a file path or the file's bytes (decoded images have lost their metadata).
        name: label for the returned photo (default: the file stem, or ``"image"``).
        guided: upsample small maps (HEIC: about 5x smaller) guided by the photo's edges;
            False = bilinear.

    Returns:
        An :class:`EmbeddedDepth` (its ``photo`` is what to render), or None when the file
        carries no depth that we read (any other photo).

    Raises:
        EmbeddedDepthError: the file announces depth but it is malformed, hostile (XML entities,
            oversized fields or images, chunks out of bounds) or of an unsupported kind.
            Callers fall back to the next depth source and show the message.
    """
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        name = name or path.stem
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EmbeddedDepthError(f"cannot read {str(path)!r} ({exc.strerror or exc}).") from None
    else:
        data = bytes(source)
    name = name or "image"
    if looks_like_heif(data):
        return read_heic_depth(data, name, guided=guided)
    if is_jpeg(data):
        return _read_jpeg(data, name, guided)
    return None
