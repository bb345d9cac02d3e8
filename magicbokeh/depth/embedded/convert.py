"""Stored depth values to the package's disparity, and the small checks every reader shares.

Conventions (GDepth and Dynamic Depth 1.0 specs): a stored value ``dn`` in [0, 1] (0 = near) means
    RangeInverse: depth = far * near / (far - dn * (far - near))   (1/depth is linear in dn)
    RangeLinear:  depth = near + dn * (far - near)
so the normalised disparity (1 = near) of RangeInverse is exactly ``minmax(1 - dn)``.
"""

from __future__ import annotations

import base64
import binascii
import io
import math

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...focus import normalise_disparity
from .types import MAX_BASE64_CHARS, MAX_MAP_PIXELS, EmbeddedDepthError

RANGE_FORMATS = ("RangeInverse", "RangeLinear")


def parse_float(value: str | None, what: str) -> float:
    """A finite float from an XMP attribute, or :class:`EmbeddedDepthError` naming it."""
    try:
        out = float(value) if value is not None else math.nan
    except ValueError:
        out = math.nan
    if not math.isfinite(out):
        raise EmbeddedDepthError(f"the photo's {what} is missing or not a number: {str(value)[:40]!r}.")
    return out


def range_to_depth(dn: np.ndarray, fmt: str, near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    """(normalised disparity, depth in the file's units) from stored values ``dn`` in [0, 1]."""
    if fmt not in RANGE_FORMATS:
        raise EmbeddedDepthError(
            f"depth format {fmt[:40]!r} is not supported (only RangeInverse and RangeLinear)."
        )
    if not (0 < near < far):
        raise EmbeddedDepthError(
            f"the depth range is invalid: Near {near:g}, Far {far:g} (need 0 < Near < Far)."
        )
    dn = np.asarray(dn, np.float64)
    if fmt == "RangeInverse":
        depth = far * near / (far - dn * (far - near))
        disparity = normalise_disparity((1.0 - dn).astype(np.float32))
    else:
        depth = near + dn * (far - near)
        disparity = normalise_disparity((1.0 / depth).astype(np.float32))
    return disparity, depth.astype(np.float32)


def decode_base64(text: str | None, what: str) -> bytes:
    """Bytes of a base64 XMP field, refusing fields above :data:`MAX_BASE64_CHARS` before decoding."""
    if not text:
        raise EmbeddedDepthError(f"the photo announces {what} but it is missing or empty.")
    if len(text) > MAX_BASE64_CHARS:
        raise EmbeddedDepthError(
            f"the photo's {what} is {len(text)} characters of base64 (limit {MAX_BASE64_CHARS}); refused."
        )
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EmbeddedDepthError(f"the photo's {what} is not valid base64 ({exc}).") from None


def decode_map(data: bytes, what: str, *, max_pixels: int = MAX_MAP_PIXELS) -> np.ndarray:
    """A stored single-channel map (PNG or JPEG, 8 or 16 bit) as float64 in [0, 1].

    The pixel count is checked from the header before decoding; for R = G = B images the first
    channel is the value (a luminance conversion would round).
    """
    try:
        img = Image.open(io.BytesIO(data))
        if img.format not in ("PNG", "JPEG"):
            raise EmbeddedDepthError(f"the photo's {what} is {img.format}, not PNG or JPEG.")
        w, h = img.size
        if w * h > max_pixels or min(w, h) < 1:
            raise EmbeddedDepthError(f"the photo's {what} is {w}x{h} pixels (limit {max_pixels}); refused.")
        img.load()
    except EmbeddedDepthError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise EmbeddedDepthError(f"cannot decode the photo's {what} ({exc}).") from None
    if img.mode == "P":
        img = img.convert("RGB")
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L", "LA", "RGB", "RGBA"):
        raise EmbeddedDepthError(f"the photo's {what} has unsupported pixel mode {img.mode}.")
    stored = np.asarray(img)
    if stored.ndim == 3:
        stored = stored[..., 0]  # select before converting: 1/3 of the float work
    if img.mode.startswith("I"):
        top = 65535.0 if img.mode != "I" or stored.max() > 255 else 255.0
    else:
        top = 255.0
    return np.clip(stored / top, 0.0, 1.0)


# Where a point of the stored image lands in the upright one, per EXIF orientation (u, v in [0, 1]).
_ORIENT_POINT = {
    1: lambda u, v: (u, v),
    2: lambda u, v: (1 - u, v),
    3: lambda u, v: (1 - u, 1 - v),
    4: lambda u, v: (u, 1 - v),
    5: lambda u, v: (v, u),
    6: lambda u, v: (1 - v, u),
    7: lambda u, v: (1 - v, 1 - u),
    8: lambda u, v: (v, 1 - u),
}

# The same as PIL transposes (ImageOps.exif_transpose's table), for maps stored like the photo.
_ORIENT_METHOD = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orient_point(u: float, v: float, orientation: int) -> tuple[float, float]:
    """A normalised point of the stored image in the upright image, clamped to [0, 1]."""
    x, y = _ORIENT_POINT.get(orientation, _ORIENT_POINT[1])(u, v)
    return min(max(float(x), 0.0), 1.0), min(max(float(y), 0.0), 1.0)


def orient_map(arr: np.ndarray, orientation: int) -> np.ndarray:
    """A (h, w) map stored like the photo, turned upright with the photo's orientation."""
    method = _ORIENT_METHOD.get(orientation)
    if method is None:
        return arr
    out = Image.fromarray(np.ascontiguousarray(arr, np.float32), mode="F").transpose(method)
    return np.asarray(out, np.float32)


def same_aspect(w: int, h: int, pw: int, ph: int, tolerance: float = 0.02) -> bool:
    """Whether (w, h) and (pw, ph) have the same aspect ratio within ``tolerance`` (relative)."""
    return abs((w / h) / (pw / ph) - 1.0) <= tolerance


def upright_map_for(arr: np.ndarray, orientation: int, photo_w: int, photo_h: int) -> np.ndarray:
    """Turn a stored map upright like the photo, unless it is already upright (checked by aspect).

    Readers may or may not have applied the rotation to auxiliary images; a map whose aspect
    matches the upright photo only without the rotation is taken as already upright.
    """
    turned = orient_map(arr, orientation)
    for cand in (turned, arr):
        if same_aspect(cand.shape[1], cand.shape[0], photo_w, photo_h):
            return cand
    raise EmbeddedDepthError(
        f"the embedded depth map ({arr.shape[1]}x{arr.shape[0]}) does not have the photo's aspect "
        f"ratio ({photo_w}x{photo_h}); it cannot be aligned."
    )
