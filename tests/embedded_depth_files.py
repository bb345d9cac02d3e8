"""Builders of photos with embedded depth for the embedded-depth tests (an independent writer).

JPEG APP1 segments are written by hand from the XMP spec (part 3): main packet
``http://ns.adobe.com/xap/1.0/\\0`` + XML; Extended XMP ``http://ns.adobe.com/xmp/extension/\\0`` +
GUID (32 ASCII) + total length + offset (big-endian uint32) + bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import struct

import numpy as np
from PIL import Image

MAIN = b"http://ns.adobe.com/xap/1.0/\x00"
EXT = b"http://ns.adobe.com/xmp/extension/\x00"


def jpeg(rgb: np.ndarray, quality: int = 95, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, **kw)
    return buf.getvalue()


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def segment(body: bytes, marker: int = 0xE1) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def ext_chunk(guid: str, total: int, offset: int, data: bytes) -> bytes:
    return segment(EXT + guid.encode("ascii") + struct.pack(">II", total, offset) + data)


def md5_guid(extended: bytes) -> str:
    return hashlib.md5(extended).hexdigest().upper()


def split_chunks(extended: bytes, guid: str, size: int = 60000) -> list[bytes]:
    return [ext_chunk(guid, len(extended), o, extended[o : o + size]) for o in range(0, len(extended), size)]


def insert_segments(jpeg_bytes: bytes, segments: list[bytes]) -> bytes:
    """The JPEG with ``segments`` placed right after SOI (and after an APP1 Exif segment if any)."""
    pos = 2
    if jpeg_bytes[2:4] == b"\xff\xe1" and jpeg_bytes[6:10] == b"Exif":
        pos = 4 + struct.unpack(">H", jpeg_bytes[4:6])[0]
    return jpeg_bytes[:pos] + b"".join(segments) + jpeg_bytes[pos:]


def xmp_main(attrs: str, guid: str | None = None, namespaces: str = "") -> bytes:
    note = f' xmpNote:HasExtendedXMP="{guid}"' if guid else ""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/"'
        ' xmlns:GDepth="http://ns.google.com/photos/1.0/depthmap/"'
        ' xmlns:GFocus="http://ns.google.com/photos/1.0/focus/"'
        f' xmlns:GImage="http://ns.google.com/photos/1.0/image/" {namespaces} {attrs}{note}/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def gdepth_file(
    primary: bytes,
    depth_image: bytes,
    original: bytes | None,
    *,
    fmt: str = "RangeInverse",
    near: float = 10.0,
    far: float = 100.0,
    focus: tuple[float, float, float] | None = None,
    chunk: int = 60000,
    guid_case: str = "upper",
) -> tuple[bytes, bytes, str]:
    """(file, extended packet, GUID) of a Lens Blur-style JPEG."""
    ext_attrs = f'GDepth:Data="{base64.b64encode(depth_image).decode()}"'
    if original is not None:
        ext_attrs += f' GImage:Data="{base64.b64encode(original).decode()}"'
    extended = xmp_main(ext_attrs)
    guid = md5_guid(extended)
    guid = guid.lower() if guid_case == "lower" else guid
    attrs = f'GDepth:Format="{fmt}" GDepth:Near="{near}" GDepth:Far="{far}" GDepth:Mime="image/png"'
    if focus:
        attrs += f' GFocus:FocalPointX="{focus[0]}" GFocus:FocalPointY="{focus[1]}" GFocus:FocalDistance="{focus[2]}"'
    main = segment(MAIN + xmp_main(attrs, guid.upper()))
    return insert_segments(primary, [main, *split_chunks(extended, guid, chunk)]), extended, guid


def billion_laughs(levels: int = 9) -> str:
    ents = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, levels + 1)
    ]
    return f'<?xml version="1.0"?><!DOCTYPE x:xmpmeta [{"".join(ents)}]>'


def dynamic_depth_file(primary: bytes, extended_xml: str, main_xml: str, items: list[bytes]) -> bytes:
    """Primary JPEG + XMP (main + extended) + the items appended in container order."""
    guid = md5_guid(extended_xml.encode())
    main_xml = main_xml.replace(_guid_in(main_xml), guid) if _guid_in(main_xml) else main_xml
    segs = [segment(MAIN + main_xml.encode()), *split_chunks(extended_xml.encode(), guid, 1000)]
    return insert_segments(primary, segs) + b"".join(items)


def _guid_in(xml: str) -> str | None:
    import re

    m = re.search(r'HasExtendedXMP="([0-9A-Fa-f]{32})"', xml)
    return m.group(1) if m else None
