"""Named ranges and defaults shared by the core, the CLI help and the app's sliders."""

from __future__ import annotations

import os

#: Blur strength K, as in the official model: 0 = no blur (restoration only), 32 = strongest.
K_RANGE: tuple[float, float] = (0.0, 32.0)
K_DEFAULT: float = 16.0
#: The official model's in-focus threshold on the unitless defocus |d - f| * K / 32.
IN_FOCUS_DEFOCUS_THRESHOLD: float = 0.1
#: Half-size of the window (pixels) over which a clicked focus point takes the median disparity.
FOCUS_WINDOW_RADIUS_PX: int = 3
#: Smallest image side we accept (pixels).
MIN_IMAGE_SIDE_PX: int = 16
#: Largest image we accept by default (megapixels); raise with MAGICBOKEH_MAX_MEGAPIXELS.
MAX_MEGAPIXELS_DEFAULT: float = 40.0
#: Focal range: width in disparity units [0, 1] around the focus that stays fully sharp.
FOCAL_RANGE_MAX: float = 1.0
#: Polygonal aperture blade counts.
BLADES_RANGE: tuple[int, int] = (3, 12)
#: BokehMe highlight boost defaults (threshold on sRGB values, enhancement ratio).
HIGHLIGHT_THRESHOLD: float = 220.0 / 255.0
HIGHLIGHT_RATIO: float = 0.4


def max_megapixels() -> float:
    """The image size limit in megapixels (env ``MAGICBOKEH_MAX_MEGAPIXELS`` overrides the default)."""
    raw = os.environ.get("MAGICBOKEH_MAX_MEGAPIXELS")
    if not raw:
        return MAX_MEGAPIXELS_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        return MAX_MEGAPIXELS_DEFAULT
    return value if value > 0 else MAX_MEGAPIXELS_DEFAULT
