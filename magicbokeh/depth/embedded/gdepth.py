"""Google Camera "Lens Blur" JPEGs: GDepth (map), GImage (unblurred original) and GFocus (focus).

The primary JPEG of such a file is already blurred by the phone; the photo to render is the
original in ``GImage:Data``. ``GDepth:Data`` and ``GImage:Data`` are base64 in Extended XMP.
"""

from __future__ import annotations

from ...errors import MagicBokehError
from ...images import load_photo
from .convert import decode_base64, decode_map, orient_point, parse_float, range_to_depth, upright_map_for
from .guided import upsample_map
from .types import EmbeddedDepth, EmbeddedDepthError

GDEPTH = "http://ns.google.com/photos/1.0/depthmap/"
GFOCUS = "http://ns.google.com/photos/1.0/focus/"
GIMAGE = "http://ns.google.com/photos/1.0/image/"


def has_gdepth(props: dict[str, str]) -> bool:
    """Whether the XMP properties describe a GDepth map."""
    return f"{{{GDEPTH}}}Format" in props or f"{{{GDEPTH}}}Data" in props


def gfocus_hint(props: dict[str, str], orientation: int) -> tuple[tuple[float, float] | None, float | None]:
    """(upright focus point in [0, 1], focus distance in the file's units) from GFocus, else Nones."""
    point = distance = None
    try:
        x, y = float(props[f"{{{GFOCUS}}}FocalPointX"]), float(props[f"{{{GFOCUS}}}FocalPointY"])
        if 0 <= x <= 1 and 0 <= y <= 1:
            point = orient_point(x, y, orientation)
    except (KeyError, ValueError):
        pass
    try:
        distance = float(props[f"{{{GFOCUS}}}FocalDistance"])
        distance = distance if distance > 0 and distance != float("inf") else None
    except (KeyError, ValueError):
        pass
    return point, distance


def load_embedded_photo(data: bytes, name: str, what: str):
    """An embedded image (original photo) through the common photo decoder and its size limits."""
    try:
        return load_photo(data, name=name)
    except MagicBokehError as exc:
        raise EmbeddedDepthError(f"the photo's {what}: {exc}") from None


def read_gdepth(
    props: dict[str, str], primary: bytes, name: str, orientation: int, *, guided: bool = True
) -> EmbeddedDepth:
    """The GDepth map, the original photo and the focus hint of a Lens Blur JPEG."""
    fmt = props.get(f"{{{GDEPTH}}}Format", "RangeInverse")
    near = parse_float(props.get(f"{{{GDEPTH}}}Near"), "GDepth:Near")
    far = parse_float(props.get(f"{{{GDEPTH}}}Far"), "GDepth:Far")
    encoded = decode_base64(props.get(f"{{{GDEPTH}}}Data"), "GDepth:Data")
    dn = decode_map(encoded, "GDepth:Data depth map")
    messages = [f"depth from GDepth ({fmt}, {dn.shape[1]}x{dn.shape[0]})"]
    if props.get(f"{{{GIMAGE}}}Data"):
        original = decode_base64(props[f"{{{GIMAGE}}}Data"], "GImage:Data")
        photo = load_embedded_photo(original, name, "GImage:Data")
        messages.append("rendering the original photo from GImage:Data (the primary JPEG is already blurred)")
    else:
        photo = load_embedded_photo(primary, name, "primary image")
        messages.append(
            "no GImage:Data original: rendering the primary JPEG, which the phone may have blurred"
        )
    disparity, depth = range_to_depth(dn, fmt, near, far)
    pw, ph = photo.size
    native = upright_map_for(disparity, orientation, pw, ph)
    depth = upright_map_for(depth, orientation, pw, ph)
    point, distance = gfocus_hint(props, orientation)
    if point:
        messages.append("focus preset from GFocus (the phone's focal point)")
    return EmbeddedDepth(
        format="gdepth",
        photo=photo,
        disparity=upsample_map(native, photo.rgb, guided=guided),
        disparity_native=native,
        representation=fmt,
        depth_native=depth,
        near=near,
        far=far,
        units="arbitrary (GDepth)",
        focus_point=point,
        focus_distance=distance,
        focus_source="GFocus" if point else None,
        messages=messages,
    )
