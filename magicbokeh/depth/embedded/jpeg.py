"""The XMP segments of a JPEG file (main packet and Extended XMP chunks), read with bounds."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .types import EmbeddedDepthError
from .xmp import ExtendedChunk

XMP_MAIN = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
EXIF = b"Exif\x00\x00"


@dataclass
class JpegMetadata:
    """Main XMP packet (or None) and Extended XMP chunks of a JPEG's header segments."""

    xmp: bytes | None = None
    extended: list[ExtendedChunk] = field(default_factory=list)


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def read_jpeg_metadata(data: bytes) -> JpegMetadata:
    """Walk the JPEG's marker segments up to the image data (SOS) and collect the XMP ones.

    Raises :class:`EmbeddedDepthError` for a segment that runs past the end of the file.
    """
    meta = JpegMetadata()
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise EmbeddedDepthError(f"malformed JPEG: no marker at byte {i}.")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2 or i + 2 + length > n:
            raise EmbeddedDepthError(
                f"malformed JPEG: a segment at byte {i} declares {length} bytes past the end of the file."
            )
        body = data[i + 4 : i + 2 + length]
        if marker == 0xE1:
            if body.startswith(XMP_MAIN) and meta.xmp is None:
                meta.xmp = body[len(XMP_MAIN) :]
            elif body.startswith(XMP_EXTENSION):
                head = len(XMP_EXTENSION)
                if len(body) < head + 40:
                    raise EmbeddedDepthError(
                        "malformed JPEG: an Extended XMP chunk is shorter than its header."
                    )
                guid = body[head : head + 32].decode("ascii", "replace")
                total, offset = struct.unpack(">II", body[head + 32 : head + 40])
                meta.extended.append(ExtendedChunk(guid, total, offset, body[head + 40 :]))
        i += 2 + length
    return meta
