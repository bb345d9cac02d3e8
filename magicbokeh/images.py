"""Image and map I/O: decode any photo to canonical float RGB, save PNGs, load disparity maps.

Everything deeper in the package handles one form only: ``(H, W, 3)`` float32 RGB in [0, 1],
upright (EXIF orientation applied), and ``(H, W)`` float32 disparity in [0, 1], 1 = nearest.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
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
    """A short, stable hash of an array's shape, dtype and bytes (24 hex digits).

    SHA-256 because CPUs with SHA extensions (AMD Zen, Intel Ice Lake and later, ARMv8) hash it
    about twice as fast as BLAKE2b (12 MP float RGB: 90 ms instead of 180 ms); the key only has to
    tell contents apart (no key is stored on disk).
    """
    h = hashlib.sha256()
    h.update(str((array.shape, array.dtype.str)).encode())
    h.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # the same bytes, without a copy
    return h.hexdigest()[:24]


#: Elements per block when :func:`exact_levels` scans an image (a few MB of temporaries per block).
_LEVEL_BLOCK_ELEMENTS = 1 << 18


def unit_from_levels(levels: np.ndarray) -> np.ndarray:
    """8-bit levels as float32 ``level / 255`` in [0, 1], in one pass.

    The same values as ``levels.astype(np.float32) / 255`` (each is one correctly rounded float32
    division): OpenCV's table lookup of those 256 quotients, on its threads.
    """
    import cv2

    levels = np.ascontiguousarray(levels, dtype=np.uint8)
    if levels.size == 0 or levels.ndim > 3 or (levels.ndim == 3 and levels.shape[2] > 4):
        return _UNIT_LEVELS[levels]  # shapes OpenCV does not take
    return cv2.LUT(levels, _UNIT_LEVELS).reshape(levels.shape)


#: ``level / 255`` for every 8-bit level, float32.
_UNIT_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255.0)


def exact_levels(values: np.ndarray) -> np.ndarray | None:
    """The uint8 ``levels`` with ``unit_from_levels(levels)`` equal to ``values`` bit for bit, or None.

    None for anything but float32, and as soon as one value is not exactly such a level (NaN, out
    of [0, 1], -0.0, a value between levels). Scanned in row blocks, so most images that are not
    8-bit are rejected after the first block.
    """
    if values.dtype != np.float32 or values.ndim == 0 or values.size == 0:
        return None
    values = np.ascontiguousarray(values)
    levels = np.empty(values.shape, np.uint8)
    rows = max(1, _LEVEL_BLOCK_ELEMENTS // (values.size // values.shape[0]))
    for start in range(0, values.shape[0], rows):
        block = values[start:start + rows]
        scaled = block * np.float32(255.0)
        np.rint(scaled, out=scaled)
        if not (scaled.min() >= 0.0 and scaled.max() <= 255.0):  # also False for NaN
            return None
        out = levels[start:start + rows]
        np.copyto(out, scaled, casting="unsafe")  # whole numbers in [0, 255]: exact
        if not np.array_equal(unit_from_levels(out).view(np.uint32), block.view(np.uint32)):
            return None
    return levels


def photo_key(rgb: np.ndarray, levels: np.ndarray | None = None) -> str:
    """The content key of a float image in [0, 1] (``Photo.key``; the per-photo caches use it).

    An image whose every value is exactly ``level / 255`` (any 8-bit photo) is keyed by its 8-bit
    levels, ``content_key(levels)``: a quarter of the bytes to hash (12 MP: 23 ms instead of 90 ms),
    and the key a uint8 copy of the photo gets. Any other image is keyed by its float bytes. The key
    depends on the values alone, so the same pixels give the same key however they were loaded (a
    file, its bytes, a PIL image, a uint8 or a float array).

    Args:
        rgb: float32 image, usually (H, W, 3) in [0, 1].
        levels: uint8 array of rgb's shape with ``unit_from_levels(levels) == rgb``, when the
            caller decoded it (skips :func:`exact_levels`); trusted, not checked.
    """
    if levels is None:
        levels = exact_levels(rgb)
    return content_key(rgb if levels is None else levels)


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


#: (H, W, 3) float32 RGB in [0, 1], and its uint8 levels when it is exactly ``level / 255`` (else None).
RgbAndLevels = tuple[np.ndarray, np.ndarray | None]


def _from_pil(img: Image.Image, messages: list[str]) -> RgbAndLevels:
    """Upright float RGB from a PIL image (and its 8-bit levels), noting every conversion in ``messages``."""
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
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode == "F":
        gray = np.clip(np.asarray(img, np.float32), 0, 1)
        messages.append("converted 32-bit float grayscale to RGB")
        return np.repeat(gray[..., None], 3, axis=2), None
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        messages.append("converted palette image to RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba_levels = _levels(img.convert("RGBA"))
        if int(rgba_levels[..., 3].min()) == 255:
            # Opaque: flattening is x * 1 + 0 = x exactly, so these are the plain RGB levels.
            levels = np.ascontiguousarray(rgba_levels[..., :3])
            return unit_from_levels(levels), levels
        rgba = unit_from_levels(rgba_levels)
        alpha = rgba[..., 3:4]
        messages.append("flattened transparency onto white")
        return (rgba[..., :3] * alpha + (1.0 - alpha)).astype(np.float32), None
    if mode in ("L", "1"):
        messages.append("converted grayscale image to RGB")
    elif mode != "RGB":
        messages.append(f"converted {mode} image to RGB")
    levels = _levels(img if mode == "RGB" else img.convert("RGB"))
    return unit_from_levels(levels), levels


def _levels(img: Image.Image) -> np.ndarray:
    """An 8-bit PIL image's pixels as a uint8 array. Read as uint8 and converted afterwards:
    ``np.asarray(img, dtype=np.float32)`` goes through a generic path ~8x slower (0.9 s for 12 MP)."""
    return np.asarray(img)


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
        rgb, levels = _decode_bytes(data, str(path), messages)
    elif isinstance(source, (bytes, bytearray)):
        rgb, levels = _decode_bytes(bytes(source), name or "image", messages)
    elif isinstance(source, Image.Image):
        check_size(*source.size)
        rgb, levels = _from_pil(source, messages)
    elif isinstance(source, np.ndarray):
        rgb, levels = _array_to_rgb(source, messages)
    else:
        raise MagicBokehError(f"unsupported image input of type {type(source).__name__}.")
    h, w = rgb.shape[:2]
    check_size(w, h)
    if levels is None:
        rgb = np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)
    # else: rgb is a fresh contiguous float32 array of level / 255, in [0, 1] already.
    return Photo(rgb=rgb, key=photo_key(rgb, levels), messages=messages, name=name or "image")


def _decode_bytes(data: bytes, label: str, messages: list[str]) -> RgbAndLevels:
    try:
        img = Image.open(io.BytesIO(data))
        check_size(*img.size)  # before decoding: a huge image is refused without using memory
        sixteen = _read_16bit_png(data)
        if sixteen is not None:
            messages.append("converted 16-bit colour image to 8-bit precision float")
            return sixteen, None
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
    return _array_to_rgb(array, messages if messages is not None else [])[0]


def _array_to_rgb(array: np.ndarray, messages: list[str]) -> RgbAndLevels:
    """:func:`to_rgb_float`, and the uint8 levels of a uint8 gray or RGB array (else None)."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
        messages.append("converted grayscale image to RGB")
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise MagicBokehError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}.")
    if arr.dtype == np.uint8 and arr.shape[2] != 4:
        levels = np.ascontiguousarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr)
        return unit_from_levels(levels), levels
    if arr.dtype == np.uint8:
        out = unit_from_levels(arr)
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
    return np.ascontiguousarray(out, dtype=np.float32), None


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float [0, 1] image to uint8 with rounding."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _levels_to_write(arr: np.ndarray, bits: int) -> np.ndarray:
    """Float [0, 1] values as the integer levels ``floor(clip(x, 0, 1) * top + 0.5)`` (top = 255, or
    65535 for 16 bits; float32 arithmetic), channels reversed for OpenCV (BGR).

    One float copy worked in place (a 12 MP RGB image: ~50 ms instead of ~140 ms with a new
    temporary per step); the values are exactly those of the expression above.
    """
    import cv2

    if arr.ndim == 3 and arr.shape[2] == 3 and arr.size:
        # The working copy, already in OpenCV's order, in one multithreaded pass.
        work = cv2.cvtColor(np.ascontiguousarray(arr, np.float32), cv2.COLOR_RGB2BGR)
    else:
        work = np.array(arr, np.float32)
        if work.ndim == 3:
            work = work[..., ::-1]  # OpenCV writes BGR
    np.clip(work, 0.0, 1.0, out=work)
    work *= np.float32(65535.0 if bits == 16 else 255.0)
    work += np.float32(0.5)
    return np.ascontiguousarray(work.astype(np.uint16 if bits == 16 else np.uint8))  # truncates: floor


def save_png(path: str | Path, rgb_or_gray: np.ndarray, *, bits: int = 8) -> Path:
    """Write a float [0, 1] image (H, W, 3) or map (H, W) as an 8- or 16-bit image, atomically.

    The format follows the suffix (PNG normally). The file is written under a temporary name in the
    same folder and renamed into place (:mod:`magicbokeh.publish`), so a failed write (full disk,
    read-only folder) leaves any previous ``path`` untouched and raises MagicBokehError.
    """
    import cv2

    from .publish import publish_file

    path = Path(path)
    out = _levels_to_write(np.asarray(rgb_or_gray, np.float32), bits)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with publish_file(path) as tmp:
            if not cv2.imwrite(str(tmp), out):
                raise MagicBokehError(f"cannot write {str(path)!r} (no space left, or no writer for "
                                      f"'{path.suffix}').")
    except OSError as exc:
        raise MagicBokehError(f"cannot write {str(path)!r}: {exc.strerror or exc}.") from None
    return path


def prefetch_map(path: str | Path, *, what: str = "disparity map") -> None:
    """Start reading the map file ``path`` in a background thread; the next :func:`load_map` of the
    same, unchanged file with the same ``what`` takes its result (or its error) instead of reading
    it again. The CLI reads the disparity map this way while it decodes the photo (both decoders
    release the GIL): at 12 MP the map costs ~0.15 s."""
    key = _map_file_key(path, what)
    if key is None:
        return
    done = threading.Event()
    slot: dict[str, Any] = {}

    def read() -> None:
        try:
            slot["map"] = _read_map(Path(path).expanduser(), what)
        except BaseException as exc:  # handed to the load_map that takes it
            slot["error"] = exc
        finally:
            done.set()

    with _prefetch_lock:
        _prefetched[key] = (done, slot)
    threading.Thread(target=read, name="map-prefetch", daemon=True).start()


def _map_file_key(path: str | Path, what: str) -> tuple | None:
    try:
        path = Path(path).expanduser().resolve()
        stat = path.stat()
    except (OSError, RuntimeError):
        return None
    return str(path), stat.st_size, stat.st_mtime_ns, what


_prefetched: dict[tuple, tuple[threading.Event, dict[str, Any]]] = {}
_prefetch_lock = threading.Lock()


def load_map(source: Any, *, what: str = "disparity map") -> np.ndarray:
    """A single-channel map from a ``.npy`` file, an 8/16-bit image file, or an array, as float32.

    Values of 8-bit images are scaled to [0, 1] by 255, 16-bit by 65535; ``.npy`` values are kept.
    """
    if isinstance(source, (str, Path)) and _prefetched:
        key = _map_file_key(source, what)
        with _prefetch_lock:
            pending = _prefetched.pop(key, None)
        if pending is not None:
            done, slot = pending
            done.wait()
            if "error" in slot:
                raise slot["error"]
            return slot["map"]
    if isinstance(source, (str, Path)):
        return _read_map(Path(source).expanduser(), what)
    return _map_array(np.asarray(source), what)


def _read_map(path: Path, what: str) -> np.ndarray:
    """:func:`load_map` of a file."""
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
    return _map_array(arr, what)


def _map_array(arr: np.ndarray, what: str) -> np.ndarray:
    """:func:`load_map` of an array."""
    arr = np.squeeze(arr)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise MagicBokehError(f"the {what} must be a single-channel 2-D map; got shape {arr.shape}.")
    # One pass each (no float temporary), the values of astype(np.float32) / 255 (or / 65535).
    if arr.dtype == np.uint8:
        return unit_from_levels(arr)
    if arr.dtype == np.uint16:
        return np.divide(arr, np.float32(65535.0), dtype=np.float32)
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
