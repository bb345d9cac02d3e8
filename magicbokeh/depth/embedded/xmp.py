"""XMP packets of untrusted photos: safe parsing (defusedxml) and bounded Extended XMP reassembly.

Extended XMP (XMP spec part 3) splits one packet over JPEG APP1 segments, each
``http://ns.adobe.com/xmp/extension/\\0`` + 32-character GUID + total length + offset (big-endian
uint32) + bytes. The main packet names the GUID in ``xmpNote:HasExtendedXMP``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # only for the ParseError type and Element; never to parse
from dataclasses import dataclass

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from .types import MAX_EXTENDED_XMP_BYTES, EmbeddedDepthError

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMP_NOTE = "http://ns.adobe.com/xmp/note/"


@dataclass
class ExtendedChunk:
    """One APP1 piece of an Extended XMP packet."""

    guid: str
    total: int
    offset: int
    data: bytes


def parse_packet(data: bytes | str, what: str = "XMP packet") -> ET.Element:
    """The root element of one XMP packet, parsed without DTDs or entities (defusedxml)."""
    if isinstance(data, bytes):
        data = data.rstrip(b"\x00 \t\r\n")
    try:
        return SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise EmbeddedDepthError(
            f"the photo's {what} uses XML DTDs or entities, which are refused ({type(exc).__name__})."
        ) from None
    except (ET.ParseError, ValueError) as exc:
        raise EmbeddedDepthError(f"the photo's {what} is not well-formed XML ({exc}).") from None


def simple_properties(root: ET.Element) -> dict[str, str]:
    """``{"{namespace}name": value}`` of every rdf:Description's attributes and text-only children.

    The first occurrence of a name wins (the main packet is read before the extended one).
    """
    props: dict[str, str] = {}
    for desc in root.iter(f"{{{RDF}}}Description"):
        for key, value in desc.attrib.items():
            props.setdefault(key, value)
        for child in desc:
            if len(child) == 0 and child.text and child.text.strip():
                props.setdefault(child.tag, child.text.strip())
    return props


def element_properties(element: ET.Element) -> dict[str, str]:
    """Attributes and text-only children of an element and of its nested rdf:Description."""
    props = dict(element.attrib)
    for child in element:
        if child.tag == f"{{{RDF}}}Description":
            props.update(element_properties(child))
        elif len(child) == 0 and child.text and child.text.strip():
            props.setdefault(child.tag, child.text.strip())
    return props


def assemble_extended(chunks: list[ExtendedChunk], guid: str) -> bytes:
    """The Extended XMP packet named ``guid`` from its chunks, with every bound checked.

    GUIDs match case-insensitively (a Pixel writes lower case). Chunks with another GUID are
    ignored, as the XMP spec says; a missing, oversized, overlapping-out-of-range or incomplete
    packet raises :class:`EmbeddedDepthError`.
    """
    guid = guid.strip()
    if len(guid) != 32 or any(c not in "0123456789abcdefABCDEF" for c in guid):
        raise EmbeddedDepthError(f"xmpNote:HasExtendedXMP is not a 32-digit GUID: {guid[:40]!r}.")
    mine = [c for c in chunks if c.guid.lower() == guid.lower()]
    if not mine:
        others = sorted({c.guid for c in chunks})
        found = f"only chunks for GUID {others[0]!r}" if others else "no Extended XMP chunks"
        raise EmbeddedDepthError(
            f"the photo announces Extended XMP {guid!r} but has {found}; its depth cannot be read."
        )
    total = mine[0].total
    if any(c.total != total for c in mine):
        raise EmbeddedDepthError("the Extended XMP chunks disagree about the packet's total length.")
    if total <= 0 or total > MAX_EXTENDED_XMP_BYTES:
        raise EmbeddedDepthError(
            f"the Extended XMP declares {total} bytes (limit {MAX_EXTENDED_XMP_BYTES}); refused."
        )
    buf = bytearray(total)
    spans = []
    for c in mine:
        end = c.offset + len(c.data)
        if end > total:
            raise EmbeddedDepthError(
                f"an Extended XMP chunk (offset {c.offset}, {len(c.data)} bytes) lies outside the "
                f"packet's {total} bytes."
            )
        buf[c.offset : end] = c.data
        spans.append((c.offset, end))
    covered = 0
    for start, end in sorted(spans):
        if start > covered:
            break
        covered = max(covered, end)
    if covered < total:
        raise EmbeddedDepthError(
            f"the Extended XMP is incomplete: bytes {covered} to {total} are missing (truncated file?)."
        )
    return bytes(buf)
