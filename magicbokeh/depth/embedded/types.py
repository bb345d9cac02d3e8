"""What the embedded-depth readers return, their error type and their bounds on untrusted input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import MagicBokehError
from ...images import Photo

# Bounds on untrusted input, checked before any allocation or decoding that they guard.
MAX_EXTENDED_XMP_BYTES = 64 * 1024 * 1024  # declared total of one Extended XMP packet
MAX_BASE64_CHARS = 48 * 1024 * 1024  # one base64 field (GDepth:Data, GImage:Data)
MAX_CONTAINER_ITEMS = 32  # Dynamic Depth Container:Directory entries
MAX_ITEM_BYTES = 256 * 1024 * 1024  # one Dynamic Depth item
MAX_MAP_PIXELS = 64_000_000  # a decoded depth or confidence map (the photo has its own MP limit)

FORMAT_NAMES = {
    "heic-depth": "HEIC depth image (iPhone portrait)",
    "gdepth": "GDepth (Google Camera Lens Blur)",
    "dynamic-depth": "Dynamic Depth 1.0 (Android portrait)",
}


class EmbeddedDepthError(MagicBokehError):
    """A photo claims to carry depth but it is malformed, hostile or of an unsupported kind.

    Callers fall back to the next depth source and show ``str(error)``.
    """


@dataclass
class EmbeddedDepth:
    """Depth stored inside a photo, converted to the package's conventions.

    Attributes:
        format: ``"heic-depth"``, ``"gdepth"`` or ``"dynamic-depth"`` (see :attr:`format_name`).
        photo: the pixels to render, upright: the original image for GDepth and for Dynamic Depth
            files that carry one (their primary JPEG is already blurred), else the primary image.
        disparity: (H, W) float32 in [0, 1], 1 = nearest, at ``photo``'s size.
        disparity_native: the same at the stored map's resolution (upright), before upsampling.
        depth_native: (h, w) float32 depth in the file's units at the stored resolution, or None
            when the file gives no range (units: ``units``; GDepth's are arbitrary).
        representation: how the file stores the map (``RangeInverse``, ``RangeLinear``,
            ``uniform disparity``, ``uniform inverse depth``).
        near, far: nearest/farthest depth of the stored range in the file's units, or None.
        units: the unit of ``near``/``far``/``depth_native`` as the file states it, or None.
        focus_point: (x, y) in [0, 1] of the upright photo where the camera focused, or None.
        focus_distance: the focus distance in the file's units (GFocus:FocalDistance), or None.
        focus_source: what gave the focus point (``"GFocus"``, ``"EXIF SubjectArea"``), or None.
        confidence: (H, W) float32 in [0, 1] (1 = confident) at the photo's size, or None.
        messages: what was converted on the way, for the status line.
    """

    format: str
    photo: Photo
    disparity: np.ndarray
    disparity_native: np.ndarray
    representation: str
    depth_native: np.ndarray | None = None
    near: float | None = None
    far: float | None = None
    units: str | None = None
    focus_point: tuple[float, float] | None = None
    focus_distance: float | None = None
    focus_source: str | None = None
    confidence: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def format_name(self) -> str:
        """A human-readable name of the format for the status line."""
        return FORMAT_NAMES.get(self.format, self.format)

    def focus_disparity(self) -> float | None:
        """The normalised disparity (1 = near) to focus on, or None without a focus hint.

        From ``focus_distance`` when the file gives one (exact: the normalised disparity is
        ``minmax(1 / depth)`` for every supported format), else the median of ``disparity`` in a
        small window around ``focus_point``.
        """
        if self.focus_distance and self.depth_native is not None:
            inv = 1.0 / self.depth_native.astype(np.float64)
            lo, hi = float(inv.min()), float(inv.max())
            if hi > lo:
                return float(np.clip((1.0 / self.focus_distance - lo) / (hi - lo), 0.0, 1.0))
        if self.focus_point is None:
            return None
        h, w = self.disparity.shape
        x = min(int(self.focus_point[0] * w), w - 1)
        y = min(int(self.focus_point[1] * h), h - 1)
        r = max(1, round(max(h, w) / 200))
        return float(np.median(self.disparity[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]))

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts: format, representation, near/far, units, sizes, focus."""
        h, w = self.disparity_native.shape
        return {
            "format": self.format,
            "format_name": self.format_name,
            "representation": self.representation,
            "near": self.near,
            "far": self.far,
            "units": self.units,
            "stored_size": [w, h],
            "photo_size": list(self.photo.size),
            "focus_point": list(self.focus_point) if self.focus_point else None,
            "focus_distance": self.focus_distance,
            "focus_source": self.focus_source,
            "focus_disparity": self.focus_disparity(),
            "has_confidence": self.confidence is not None,
        }
