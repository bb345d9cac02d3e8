"""Processing size: the size at which a photo is rendered, and how K follows it.

Like Marigold's "processing resolution": a large photo may be rendered smaller (its long side
capped at ``max_side`` pixels) and, when asked, the result is resized back to the input's size.

The K rule (one function, :func:`k_for_processing`):

* **CLI and core default** (``k_units="processed"``): K is in pixels of the *processed* image,
  the official convention; with ``max_side=None`` nothing is resized, so parity holds.
* **App** (``k_units="input"``): K is in pixels of the *input* photo. When the photo is processed
  at scale ``s = processed_long_side / input_long_side`` (``s <= 1``, we never upscale), the
  renderer gets ``K_processed = K * s``. The blur radius measured in input pixels, and hence the
  blur as a fraction of the image width, is then the same whatever processing size is chosen,
  and at the original size the app's K is exactly the official K. Because ``s <= 1`` the scaled
  K always stays inside the model's trained range [0, 32].

Also here: :func:`decode_upload`, which decodes an uploaded file in our code, so that a corrupt
or non-image upload gets our message instead of a generic framework error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import MagicBokehError
from .settings import MIN_IMAGE_SIDE_PX

#: Smallest and largest processing long side accepted (pixels).
MAX_SIDE_RANGE: tuple[int, int] = (64, 8192)
#: Default processing long side per backend in the app (None = original size).
#: The diffusion model was trained on 512 px crops of ~1-2 MP photos (EBB!: ~1536x1024); 1600
#: keeps those photos at their own size (1562x1024 = 18 tiles) while a 12 MP photo drops from
#: 165 tiles to 24. The classical renderer is cheap; 3072 bounds its memory and time on 40 MP
#: uploads (a 12 MP photo is processed at ~7 MP).
DEFAULT_MAX_SIDE: dict[str, int | None] = {
    "classical": 3072,
    "magicbokeh": 1600,
    "two-stage": 1600,
}
#: The app's "original size" choice.
ORIGINAL_SIZE: None = None
KUnits = Literal["processed", "input"]


def default_max_side(backend: str) -> int | None:
    """The app's default processing long side (pixels) for ``backend``; None = original size."""
    return DEFAULT_MAX_SIDE.get(backend, DEFAULT_MAX_SIDE["magicbokeh"])


def check_max_side(max_side: Any) -> int | None:
    """Validate a processing long side: None / 0 = original size, else an int in MAX_SIDE_RANGE."""
    if max_side is None:
        return None
    try:
        value = float(max_side)
    except (TypeError, ValueError):
        raise MagicBokehError(f"processing size must be a whole number of pixels; got {max_side!r}.") from None
    if value == 0:
        return None
    if not math.isfinite(value) or value != int(value):
        raise MagicBokehError(
            f"processing size {max_side!r} is not a whole number of pixels; give the long side as a whole "
            f"number in [{MAX_SIDE_RANGE[0]}, {MAX_SIDE_RANGE[1]}], or 0 / empty for the original size."
        )
    if not (MAX_SIDE_RANGE[0] <= value <= MAX_SIDE_RANGE[1]):
        raise MagicBokehError(
            f"processing size {int(value)} px is out of range: the long side must be in "
            f"[{MAX_SIDE_RANGE[0]}, {MAX_SIDE_RANGE[1]}] pixels; use 0 or leave it empty for the original size."
        )
    return int(value)


@dataclass(frozen=True)
class ProcessingPlan:
    """How one photo is processed.

    Attributes:
        input_size: (width, height) of the decoded input in pixels.
        processed_size: (width, height) actually rendered; equal to ``input_size`` when not resized.
        scale: processed long side / input long side, in (0, 1].
    """

    input_size: tuple[int, int]
    processed_size: tuple[int, int]
    scale: float

    @property
    def resized(self) -> bool:
        """True when the photo is processed at a smaller size than its own."""
        return self.processed_size != self.input_size


def plan(width: int, height: int, max_side: int | None) -> ProcessingPlan:
    """The processing size of a ``width`` × ``height`` photo with its long side capped at ``max_side``.

    Never upscales. Keeps the aspect ratio (each side rounded to whole pixels, at least
    ``MIN_IMAGE_SIDE_PX``). ``max_side=None`` processes at the original size.
    """
    max_side = check_max_side(max_side)
    long_side = max(width, height)
    if max_side is None or long_side <= max_side:
        return ProcessingPlan((width, height), (width, height), 1.0)
    scale = max_side / long_side
    w = max(MIN_IMAGE_SIDE_PX, int(round(width * scale)))
    h = max(MIN_IMAGE_SIDE_PX, int(round(height * scale)))
    return ProcessingPlan((width, height), (w, h), max(w, h) / long_side)


def k_for_processing(k: float, plan_: ProcessingPlan, units: KUnits = "processed") -> float:
    """The K handed to the renderer: the one place where the processing-size K rule lives.

    Args:
        k: blur strength the user chose, in [0, 32].
        plan_: the processing plan of the photo.
        units: ``"processed"`` (CLI, official): K is in pixels of the processed image and is
            returned unchanged. ``"input"`` (app): K is in pixels of the input photo and is
            multiplied by ``plan_.scale`` (processed long side / input long side), so the blur
            looks the same at every processing size.
    """
    if units == "processed":
        return float(k)
    if units == "input":
        return float(k) * plan_.scale
    raise MagicBokehError(f"unknown K units {units!r}; choose 'processed' or 'input'.")


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a float32 RGB image in [0, 1]: area averaging down, Lanczos up (clipped to [0, 1])."""
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    import cv2

    down = width * height < rgb.shape[0] * rgb.shape[1]
    interp = cv2.INTER_AREA if down else cv2.INTER_LANCZOS4
    out = cv2.resize(np.ascontiguousarray(rgb, dtype=np.float32), (width, height), interpolation=interp)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def resize_scalar_map(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a float (H, W) map (disparity, defocus): area averaging down, linear up."""
    if arr.shape == (height, width):
        return arr
    import cv2

    down = width * height < arr.shape[0] * arr.shape[1]
    interp = cv2.INTER_AREA if down else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(arr, dtype=np.float32), (width, height), interpolation=interp)


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a (H, W) mask (non-zero = set) by area coverage: a pixel is set when >= half covered."""
    if mask.shape == (height, width):
        return mask
    cover = resize_scalar_map((np.asarray(mask) != 0).astype(np.float32), width, height)
    out = cover >= 0.5
    if not out.any() and np.any(mask):  # a tiny subject must not vanish
        out = cover > 0
    return out


def scale_point(x: float, y: float, plan_: ProcessingPlan) -> tuple[float, float]:
    """A pixel (x = column, y = row) of the input, mapped to the processed image (pixel centres)."""
    (w0, h0), (w1, h1) = plan_.input_size, plan_.processed_size
    sx, sy = w1 / w0, h1 / h0
    px = min(max((float(x) + 0.5) * sx - 0.5, 0.0), w1 - 1)
    py = min(max((float(y) + 0.5) * sy - 0.5, 0.0), h1 - 1)
    return px, py


def decode_upload(upload: Any):
    """Decode an uploaded photo (a file path, bytes, or a file-like object with ``.name``/``.read``).

    Returns a :class:`magicbokeh.images.Photo`. A missing, empty, corrupt or non-image file raises
    :class:`MagicBokehError` with a message that says so (what the app shows with ``gr.Error``).
    """
    from .images import load_photo

    if upload is None:
        raise MagicBokehError("no photo given; upload a JPEG, PNG or WebP photo.")
    if isinstance(upload, (bytes, bytearray)):
        if not upload:
            raise MagicBokehError("the uploaded file is empty; upload a JPEG, PNG or WebP photo.")
        return load_photo(bytes(upload), name="upload")
    if isinstance(upload, (str, Path)):
        path: Any = upload
    else:  # gradio FileData / tempfile wrappers carry the path as .path or .name
        path = getattr(upload, "path", None) or getattr(upload, "name", None)
    if isinstance(path, (str, Path)):
        p = Path(path)
        if p.is_file() and p.stat().st_size == 0:
            raise MagicBokehError(f"the uploaded file {p.name!r} is empty; upload a JPEG, PNG or WebP photo.")
        if not p.is_file():
            raise MagicBokehError(f"cannot read the uploaded photo {p.name!r}: no such file.")
        # Decoded from bytes so that messages name the file, not the server's temporary path.
        photo = load_photo(p.read_bytes(), name=p.name)
        photo.name = p.stem
        return photo
    if hasattr(upload, "read"):
        return decode_upload(upload.read())
    return load_photo(upload)


__all__ = [
    "DEFAULT_MAX_SIDE",
    "MAX_SIDE_RANGE",
    "ProcessingPlan",
    "check_max_side",
    "decode_upload",
    "default_max_side",
    "k_for_processing",
    "plan",
    "resize_mask",
    "resize_rgb",
    "resize_scalar_map",
    "scale_point",
]
