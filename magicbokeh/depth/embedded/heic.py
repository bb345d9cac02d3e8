"""Depth auxiliary images of HEIC/HEIF photos (iPhone portrait mode), read through pillow-heif.

The depth image carries an ISO/IEC 23008-2 depth representation: type 0 (uniform inverse depth)
and type 1 (uniform disparity, what iPhones write) are linear in disparity, bright = near, so the
normalised map is ``minmax(value)``. Types 2 (uniform depth) and 3 (non-uniform disparity) are
refused with a message rather than guessed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ...errors import MagicBokehError
from ...focus import normalise_disparity
from ...images import load_photo
from .convert import orient_point, upright_map_for
from .guided import upsample_map
from .types import MAX_MAP_PIXELS, EmbeddedDepth, EmbeddedDepthError

REPRESENTATIONS = {
    0: "uniform inverse depth",
    1: "uniform disparity",
    2: "uniform depth",
    3: "non-uniform disparity",
}


def _open(data: bytes):
    try:
        import pillow_heif
    except ImportError:
        raise EmbeddedDepthError(
            "reading depth from HEIC photos needs pillow-heif (pip install pillow-heif)."
        ) from None
    try:
        return pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    except (ValueError, OSError, RuntimeError, SyntaxError) as exc:
        raise EmbeddedDepthError(f"cannot read the HEIC container ({exc}).") from None


def subject_area_point(
    exif: bytes | None, stored_w: int, stored_h: int, orientation: int
) -> tuple[float, float] | None:
    """EXIF SubjectArea (0x9214: point, circle or rectangle centre in stored pixels), normalised
    and turned upright, or None when absent or outside the image."""
    if not exif:
        return None
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        area = parsed.get_ifd(0x8769).get(0x9214)
    except Exception:  # malformed EXIF only loses the focus hint
        return None
    if not isinstance(area, tuple) or len(area) < 2:
        return None
    x, y = float(area[0]), float(area[1])
    if not (0 <= x < stored_w and 0 <= y < stored_h):
        return None
    return orient_point(x / stored_w, y / stored_h, orientation)


def _original_orientation(info: dict) -> int:
    """The EXIF/XMP orientation libheif applied (pillow-heif's rule), 1 when none; ``info`` is kept."""
    import pillow_heif

    try:
        return int(pillow_heif.set_orientation(dict(info)) or 1)  # resets EXIF in the copy only
    except Exception:  # malformed EXIF: the photo decoded upright anyway; only maps could be turned
        return 1


def read_heic_depth(data: bytes, name: str, *, guided: bool = True) -> EmbeddedDepth | None:
    """The HEIC's depth image as an :class:`EmbeddedDepth`, or None when it has none."""
    heif = _open(data)
    depth_images = heif.info.get("depth_images") or []
    if not depth_images:
        return None
    depth = depth_images[0]
    meta = depth.info.get("metadata") or {}
    rep_type = meta.get("representation_type")
    representation = REPRESENTATIONS.get(rep_type, f"type {rep_type}")
    if rep_type not in (0, 1):
        raise EmbeddedDepthError(
            f"this HEIC stores depth as {representation}, which is not supported (only uniform "
            "disparity and uniform inverse depth)."
        )
    w, h = depth.size
    if w * h > MAX_MAP_PIXELS or min(w, h) < 1:
        raise EmbeddedDepthError(f"the HEIC depth image is {w}x{h} pixels (limit {MAX_MAP_PIXELS}); refused.")
    try:
        stored = np.asarray(depth.to_pillow())
    except (ValueError, OSError, RuntimeError) as exc:
        raise EmbeddedDepthError(f"cannot decode the HEIC depth image ({exc}).") from None
    if stored.ndim == 3:
        stored = stored[..., 0]
    top = 255.0 if stored.dtype == np.uint8 else 65535.0
    value = stored.astype(np.float64) / top
    try:
        photo = load_photo(data, name=name)
    except MagicBokehError as exc:
        raise EmbeddedDepthError(str(exc)) from None
    orientation = _original_orientation(heif.info)
    pw, ph = photo.size
    native = upright_map_for(normalise_disparity(value.astype(np.float32)), orientation, pw, ph)
    near = far = depth_native = None
    lo, hi = meta.get("d_min"), meta.get("d_max")
    if rep_type == 1 and lo and hi and 0 < lo < hi:
        near, far = 1.0 / float(hi), 1.0 / float(lo)
        stored_depth = (1.0 / (lo + value * (hi - lo))).astype(np.float32)
        depth_native = upright_map_for(stored_depth, orientation, pw, ph)
    stored_w, stored_h = (ph, pw) if orientation in (5, 6, 7, 8) else (pw, ph)
    focus = subject_area_point(heif.info.get("exif"), stored_w, stored_h, orientation)
    messages = [f"depth from the HEIC depth image ({w}x{h}, {representation})"]
    if native.shape != (ph, pw):
        how = "guided by the photo's edges" if guided else "bilinear"
        messages.append(f"upsampled the depth map {w}x{h} -> {pw}x{ph} ({how})")
    if focus:
        messages.append("focus point from EXIF SubjectArea (where the camera focused)")
    return EmbeddedDepth(
        format="heic-depth",
        photo=photo,
        disparity=upsample_map(native, photo.rgb, guided=guided),
        disparity_native=native,
        representation=representation,
        depth_native=depth_native,
        near=near,
        far=far,
        units="inverse of the stored disparity" if near is not None else None,
        focus_point=focus,
        focus_source="EXIF SubjectArea" if focus else None,
        messages=messages,
    )
