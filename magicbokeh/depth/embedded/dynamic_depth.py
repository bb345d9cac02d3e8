"""Dynamic Depth 1.0 JPEGs (Android portrait photos): depth, confidence and original-image items.

The XMP's ``Container:Directory`` lists the items in file order; the first is the primary JPEG and
the others are appended after it, each ``Item:Length`` bytes plus ``Item:Padding``. They are
located from the end of the file (the primary's own length is often written as 0).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cv2
import numpy as np

from .convert import decode_map, parse_float, range_to_depth, upright_map_for
from .gdepth import gfocus_hint, load_embedded_photo
from .guided import upsample_map
from .types import MAX_CONTAINER_ITEMS, MAX_ITEM_BYTES, EmbeddedDepth, EmbeddedDepthError
from .xmp import element_properties

DD = "http://ns.google.com/photos/dd/1.0/"
CONTAINER, ITEM, CAMERA = f"{DD}container/", f"{DD}item/", f"{DD}camera/"
DEPTHMAP, IMAGE = f"{DD}depthmap/", f"{DD}image/"
MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


@dataclass
class Item:
    """One Container:Directory entry and where its bytes are in the file."""

    uri: str
    mime: str
    start: int
    length: int


def _first(roots: list[ET.Element], tag: str) -> ET.Element | None:
    for root in roots:
        found = next(root.iter(tag), None)
        if found is not None:
            return found
    return None


def has_dynamic_depth(roots: list[ET.Element]) -> bool:
    """Whether the XMP describes a Dynamic Depth camera with a depth map."""
    return _first(roots, f"{{{CAMERA}}}DepthMap") is not None


def _int(props: dict[str, str], key: str, what: str) -> int:
    raw = props.get(key, "0")
    try:
        value = int(raw)
    except ValueError:
        raise EmbeddedDepthError(f"Dynamic Depth {what} is not an integer: {raw[:20]!r}.") from None
    if not 0 <= value <= MAX_ITEM_BYTES:
        raise EmbeddedDepthError(f"Dynamic Depth {what} is {value} bytes (limit {MAX_ITEM_BYTES}); refused.")
    return value


def container_items(roots: list[ET.Element], file_size: int) -> dict[str, Item]:
    """The container's items by URI, located in the file, with lengths and magic bytes checked."""
    entries = [element_properties(el) for root in roots for el in root.iter(f"{{{CONTAINER}}}Item")]
    if not entries:
        raise EmbeddedDepthError("the Dynamic Depth XMP has no Container:Directory items.")
    if len(entries) > MAX_CONTAINER_ITEMS:
        raise EmbeddedDepthError(
            f"the Dynamic Depth container lists {len(entries)} items (limit {MAX_CONTAINER_ITEMS})."
        )
    sizes = []
    for i, props in enumerate(entries[1:], start=1):
        length = _int(props, f"{{{ITEM}}}Length", f"item {i} Length")
        if length == 0:
            raise EmbeddedDepthError(f"Dynamic Depth item {i} has Item:Length 0.")
        sizes.append(length + _int(props, f"{{{ITEM}}}Padding", f"item {i} Padding"))
    tail = sum(sizes)
    if tail >= file_size:
        raise EmbeddedDepthError(
            f"the Dynamic Depth items ({tail} bytes) extend beyond the file ({file_size} bytes): "
            "the file is truncated or its Item:Length values are wrong."
        )
    items: dict[str, Item] = {}
    start = file_size - tail
    for props, size in zip(entries[1:], sizes):
        uri = props.get(f"{{{ITEM}}}DataURI", "")
        mime = props.get(f"{{{ITEM}}}Mime", "")
        items[uri] = Item(uri, mime, start, _int(props, f"{{{ITEM}}}Length", "Length"))
        start += size
    return items


def _item_bytes(data: bytes, items: dict[str, Item], uri: str, what: str) -> bytes:
    item = items.get(uri)
    if item is None:
        raise EmbeddedDepthError(f"the Dynamic Depth {what} {uri[:60]!r} is not in the container.")
    body = data[item.start : item.start + item.length]
    magic = MAGIC.get(item.mime)
    if magic is None:
        raise EmbeddedDepthError(f"the Dynamic Depth {what} has unsupported type {item.mime[:30]!r}.")
    if not body.startswith(magic):
        raise EmbeddedDepthError(
            f"the Dynamic Depth {what} does not start with a {item.mime} header at byte {item.start}: "
            "the container's item lengths do not match the file."
        )
    return body


def read_dynamic_depth(
    roots: list[ET.Element],
    props: dict[str, str],
    data: bytes,
    name: str,
    orientation: int,
    *,
    guided: bool = True,
) -> EmbeddedDepth:
    """The depth map, confidence and original image of a Dynamic Depth 1.0 JPEG."""
    dm = element_properties(_first(roots, f"{{{CAMERA}}}DepthMap"))
    fmt = dm.get(f"{{{DEPTHMAP}}}Format", "")
    near = parse_float(dm.get(f"{{{DEPTHMAP}}}Near"), "Depth:Near")
    far = parse_float(dm.get(f"{{{DEPTHMAP}}}Far"), "Depth:Far")
    items = container_items(roots, len(data))
    depth_item = _item_bytes(data, items, dm.get(f"{{{DEPTHMAP}}}DepthURI", ""), "depth item")
    dn = decode_map(depth_item, "depth item")
    disparity, depth = range_to_depth(dn, fmt, near, far)
    messages = [f"depth from the Dynamic Depth depth item ({fmt}, {dn.shape[1]}x{dn.shape[0]})"]
    original = None
    for root in roots:
        for el in root.iter(f"{{{CAMERA}}}Image"):
            p = element_properties(el)
            if p.get(f"{{{IMAGE}}}ItemSemantic") == "Original" and p.get(f"{{{IMAGE}}}ItemURI") in items:
                original = p[f"{{{IMAGE}}}ItemURI"]
    if original is not None:
        original_item = _item_bytes(data, items, original, "original image")
        photo = load_embedded_photo(original_item, name, "original image")
        messages.append("rendering the original-image item (the primary JPEG is already blurred)")
    else:
        photo = load_embedded_photo(data, name, "primary image")
    pw, ph = photo.size
    native = upright_map_for(disparity, orientation, pw, ph)
    confidence = None
    conf_uri = dm.get(f"{{{DEPTHMAP}}}ConfidenceURI")
    if conf_uri:
        conf = decode_map(_item_bytes(data, items, conf_uri, "confidence item"), "confidence item")
        conf = upright_map_for(conf.astype(np.float32), orientation, pw, ph)
        confidence = cv2.resize(conf, (pw, ph), interpolation=cv2.INTER_LINEAR)
        messages.append("with the confidence item")
    point, distance = gfocus_hint(props, orientation)
    return EmbeddedDepth(
        format="dynamic-depth",
        photo=photo,
        disparity=upsample_map(native, photo.rgb, guided=guided),
        disparity_native=native,
        representation=fmt,
        depth_native=upright_map_for(depth, orientation, pw, ph),
        near=near,
        far=far,
        units=dm.get(f"{{{DEPTHMAP}}}Units"),
        focus_point=point,
        focus_distance=distance,
        focus_source="GFocus" if point else None,
        confidence=confidence,
        messages=messages,
    )
