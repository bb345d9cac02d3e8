"""Image and map I/O: decode any photo to canonical float RGB, save PNGs, load disparity maps.

Everything deeper in the package handles one form only: ``(H, W, 3)`` float32 RGB in [0, 1],
upright (EXIF orientation applied), and ``(H, W)`` float32 disparity in [0, 1], 1 = nearest.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MagicBokehError
from .focus import normalise_disparity
from .settings import MIN_IMAGE_SIDE_PX, max_megapixels

logger = logging.getLogger(__name__)

# We enforce our own, configurable size limit (MAGICBOKEH_MAX_MEGAPIXELS) with a clear message.
Image.MAX_IMAGE_PIXELS = None

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif")
HEIF_SUFFIXES = (".heic", ".heif")


def register_heif() -> bool:
    """Let Pillow open HEIC/HEIF (iPhone photos) through pillow-heif; False when it is not installed.

    libheif applies the HEIF rotation/mirror properties while decoding and pillow-heif then resets
    the EXIF orientation to 1 (keeping the original in ``info["original_orientation"]``), so the
    image arrives upright and is never rotated twice.
    """
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIF_AVAILABLE = register_heif()


@dataclass
class Photo:
    """A decoded photo.

    Attributes:
        rgb: (H, W, 3) float32 in [0, 1], upright.
        key: content hash of the pixels (for per-image caches).
        messages: what was converted on the way (EXIF rotation, alpha, bit depth...).
        name: file stem or a label.
    """

    rgb: np.ndarray
    key: str
    messages: list[str] = field(default_factory=list)
    name: str = "image"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]


def content_key(array: np.ndarray) -> str:
    """A short, stable hash of an array's shape, dtype and bytes."""
    h = hashlib.blake2b(digest_size=12)
    h.update(str((array.shape, array.dtype.str)).encode())
    h.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # the same bytes, without a copy
    return h.hexdigest()


def check_size(width: int, height: int) -> None:
    """Reject images that are too small or larger than the configured megapixel limit."""
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        raise MagicBokehError(
            f"image is {width}x{height}; both sides must be at least {MIN_IMAGE_SIDE_PX} px."
        )
    limit = max_megapixels()
    if width * height > limit * 1e6:
        raise MagicBokehError(
            f"image is {width}x{height} ({width * height / 1e6:.1f} MP), above the {limit:g} MP "
            "limit; downscale it or raise the limit with MAGICBOKEH_MAX_MEGAPIXELS=<MP>."
        )


def upright_pil(img: Image.Image) -> tuple[Image.Image, int]:
    """(upright image, EXIF orientation 1-8) with the orientation applied; 1 = unchanged."""
    try:
        orientation = img.getexif().get(0x0112, 1) or 1
    except Exception:  # malformed EXIF must not stop the render
        orientation = 1
    return (ImageOps.exif_transpose(img) if orientation != 1 else img), orientation


def _from_pil(img: Image.Image, messages: list[str]) -> np.ndarray:
    """Upright float RGB from a PIL image, noting every conversion in ``messages``."""
    img, orientation = upright_pil(img)
    if orientation != 1:
        messages.append(f"applied EXIF orientation {orientation} (clicks refer to the upright image)")
    heif_orientation = img.info.get("original_orientation") if img.format == "HEIF" else None
    if heif_orientation not in (None, 1):
        messages.append(
            f"applied HEIF orientation {heif_orientation} (clicks refer to the upright image)"
        )
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode != "I" or arr.max() > 255 else 255.0
        gray = np.clip(arr / top, 0, 1).astype(np.float32)
        messages.append(f"converted {mode} (16-bit grayscale) to RGB")
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.asarray(img, np.float32), 0, 1)
        messages.append("converted 32-bit float grayscale to RGB")
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        messages.append("converted palette image to RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = _unit_float(img.convert("RGBA"))
        alpha = rgba[..., 3:4]
        if float(alpha.min()) < 1.0:
            messages.append("flattened transparency onto white")
        return (rgba[..., :3] * alpha + (1.0 - alpha)).astype(np.float32)
    if mode in ("L", "1"):
        messages.append("converted grayscale image to RGB")
    elif mode != "RGB":
        messages.append(f"converted {mode} image to RGB")
    return _unit_float(img if mode == "RGB" else img.convert("RGB"))


def _unit_float(img: Image.Image) -> np.ndarray:
    """An 8-bit PIL image as float32 in [0, 1]. Read as uint8 first: ``np.asarray(img,
    dtype=np.float32)`` converts through a generic path ~8x slower (0.9 s for 12 MP), same values."""
    out = np.asarray(img).astype(np.float32)
    out /= np.float32(255.0)
    return out


def _read_16bit_png(data: bytes) -> np.ndarray | None:
    """16-bit colour PNG as float RGB (Pillow would truncate it to 8 bits), else None."""
    if not data.startswith(b"\x89PNG") or len(data) < 26 or data[24] != 16 or data[25] not in (2, 6):
        return None
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        return None
    rgb = arr[..., 2::-1].astype(np.float32) / 65535.0
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 65535.0
        rgb = rgb * alpha + (1.0 - alpha)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def load_photo(source: Any, *, name: str | None = None) -> Photo:
    """Decode a photo from a path, bytes, a PIL image or an array into a :class:`Photo`.

    Applies the EXIF orientation, flattens alpha onto white, converts palette, grayscale and 16-bit
    images, and enforces the size limits. Raises :class:`MagicBokehError` with a clear message for
    unreadable, truncated, too small or too large images.
    """
    messages: list[str] = []
    if isinstance(source, Photo):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        name = name or path.stem
        if not path.is_file():
            raise MagicBokehError(f"cannot read image {str(path)!r}: no such file.")
        data = path.read_bytes()
        rgb = _decode_bytes(data, str(path), messages)
    elif isinstance(source, (bytes, bytearray)):
        rgb = _decode_bytes(bytes(source), name or "image", messages)
    elif isinstance(source, Image.Image):
        check_size(*source.size)
        rgb = _from_pil(source, messages)
    elif isinstance(source, np.ndarray):
        rgb = to_rgb_float(source, messages)
    else:
        raise MagicBokehError(f"unsupported image input of type {type(source).__name__}.")
    h, w = rgb.shape[:2]
    check_size(w, h)
    rgb = np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)
    return Photo(rgb=rgb, key=content_key(rgb), messages=messages, name=name or "image")


def _decode_bytes(data: bytes, label: str, messages: list[str]) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(data))
        check_size(*img.size)  # before decoding: a huge image is refused without using memory
        sixteen = _read_16bit_png(data)
        if sixteen is not None:
            messages.append("converted 16-bit colour image to 8-bit precision float")
            return sixteen
        img.load()
        return _from_pil(img, messages)
    except MagicBokehError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError) as exc:
        if not HEIF_AVAILABLE and looks_like_heif(data):
            raise MagicBokehError(
                f"cannot read image {label!r}: HEIC/HEIF photos need pillow-heif "
                "(pip install pillow-heif)."
            ) from None
        raise MagicBokehError(
            f"cannot read image {label!r}: the file is not a supported image or is truncated ({exc})."
        ) from None


def looks_like_heif(data: bytes) -> bool:  # public: the embedded-depth reader dispatches on it
    """True for an ISO-BMFF file whose brand is a HEIF one (``ftypheic``, ``ftypmif1``...)."""
    brands = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis")
    return data[4:8] == b"ftyp" and data[8:12] in brands


def to_rgb_float(array: np.ndarray, messages: list[str] | None = None) -> np.ndarray:
    """Canonical (H, W, 3) float32 RGB in [0, 1] from uint8, uint16, float or gray/RGBA arrays."""
    messages = messages if messages is not None else []
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
        messages.append("converted grayscale image to RGB")
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise MagicBokehError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}.")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
        messages.append("converted 16-bit image to float")
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise MagicBokehError("the image contains NaN or infinite values.")
        if out.max(initial=0.0) > 1.0 + 1e-3 or out.min(initial=0.0) < -1e-3:
            raise MagicBokehError("a float image must hold values in [0, 1].")
    else:
        raise MagicBokehError(f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float.")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] == 4:
        alpha = out[..., 3:4]
        out = out[..., :3] * alpha + (1.0 - alpha)
        messages.append("flattened transparency onto white")
    return np.ascontiguousarray(out, dtype=np.float32)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float [0, 1] image to uint8 with rounding."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | Path, rgb_or_gray: np.ndarray, *, bits: int = 8) -> Path:
    """Write a float [0, 1] image (H, W, 3) or map (H, W) as an 8- or 16-bit image, atomically.

    The format follows the suffix (PNG normally). The file is written under a temporary name in the
    same folder and renamed into place (:mod:`magicbokeh.publish`), so a failed write (full disk,
    read-only folder) leaves any previous ``path`` untouched and raises MagicBokehError.
    """
    import cv2

    from .publish import publish_file

    path = Path(path)
    arr = np.clip(np.asarray(rgb_or_gray, np.float32), 0.0, 1.0)
    if bits == 16:
        out = (arr * 65535.0 + 0.5).astype(np.uint16)
    else:
        out = (arr * 255.0 + 0.5).astype(np.uint8)
    if out.ndim == 3:
        out = out[..., ::-1]  # OpenCV writes BGR
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with publish_file(path) as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(out)):
                raise MagicBokehError(f"cannot write {str(path)!r} (no space left, or no writer for "
                                      f"'{path.suffix}').")
    except OSError as exc:
        raise MagicBokehError(f"cannot write {str(path)!r}: {exc.strerror or exc}.") from None
    return path


def load_map(source: Any, *, what: str = "disparity map") -> np.ndarray:
    """A single-channel map from a ``.npy`` file, an 8/16-bit image file, or an array, as float32.

    Values of 8-bit images are scaled to [0, 1] by 255, 16-bit by 65535; ``.npy`` values are kept.
    """
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise MagicBokehError(f"cannot read {what} {str(path)!r}: no such file.")
        if path.suffix.lower() == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except Exception as exc:
                raise MagicBokehError(f"cannot read {what} {str(path)!r}: {exc}") from None
        else:
            import cv2

            arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise MagicBokehError(
                    f"cannot read {what} {str(path)!r}: not a readable image or .npy file."
                )
            if arr.ndim == 3 and arr.shape[2] in (3, 4):
                # Luminance, as PIL's "L" (the official code opens masks that way); OpenCV is BGR(A).
                code = cv2.COLOR_BGR2GRAY if arr.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
                arr = cv2.cvtColor(arr, code)
    else:
        arr = np.asarray(source)
    arr = np.squeeze(arr)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise MagicBokehError(f"the {what} must be a single-channel 2-D map; got shape {arr.shape}.")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number):
        raise MagicBokehError(f"the {what} has unsupported dtype {arr.dtype}.")
    return arr.astype(np.float32)


def resize_map(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a map to (width, height) with nearest-neighbour, so no values are invented at edges."""
    if arr.shape == (height, width):
        return arr
    import cv2

    return cv2.resize(arr, (width, height), interpolation=cv2.INTER_NEAREST)


def disparity_from_map(
    raw: np.ndarray, width: int, height: int, *, is_depth: bool = False
) -> np.ndarray:
    """A user-supplied map as normalised disparity at the photo's size.

    Args:
        raw: (h, w) map of any size; disparity (near = large) or, with ``is_depth``, depth
            (far = large; converted with 1 / depth, non-positive values treated as farthest).
        width, height: the photo's size in pixels.

    Returns:
        (height, width) float32 in [0, 1], 1 = nearest.
    """
    raw = np.asarray(raw, np.float32)
    if not np.all(np.isfinite(raw)):
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        raise MagicBokehError(
            f"the depth/disparity map has {bad} NaN or infinite values; fill them before use."
        )
    if is_depth:
        positive = raw > 0
        disp = np.zeros_like(raw)
        disp[positive] = 1.0 / raw[positive]
        if positive.any():
            disp[~positive] = disp[positive].min()
        raw = disp
    return normalise_disparity(resize_map(raw, width, height))


def colourise_disparity(disparity: np.ndarray, in_focus: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) float RGB view of a disparity map (turbo colours, near = warm), with the in-focus
    region outlined in white when ``in_focus`` is given."""
    import cv2

    gray = (np.clip(disparity, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    colour = cv2.applyColorMap(gray, cv2.COLORMAP_TURBO)[..., ::-1].astype(np.float32) / 255.0
    if in_focus is not None and in_focus.any() and not in_focus.all():
        m = in_focus.astype(np.uint8)
        thickness = max(1, round(max(disparity.shape) / 400))
        kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
        edge = cv2.dilate(m, kernel) != cv2.erode(m, kernel)
        colour[edge] = 1.0
    return np.ascontiguousarray(colour)
