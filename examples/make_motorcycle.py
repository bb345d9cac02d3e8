"""Write the "real photo, measured depth" example from the Middlebury 2014 motorcycle.

    python examples/make_motorcycle.py           # writes examples/motorcycle.jpg
                                                 #    and examples/motorcycle_disparity.png

The photo and its disparity come from scikit-image (``skimage.data.stereo_motorcycle()``, bundled
in its wheel, no download): the left view of Middlebury 2014 "Motorcycle", downscaled ×4 to
741 × 500, and its ground-truth disparity in pixels, measured with structured light. The app reads
example files from this folder and the Space does not install scikit-image, so the two outputs are
committed; this script rebuilds them (deterministic for a given scikit-image) and the tests check
that the committed files are what it writes.

The disparity PNG is what the app's "disparity map" input expects: 16-bit, 1 = nearest.

* Pixel disparity ``d`` needs no conversion: depth is ``Z = f·B / (d + doffs)``, so ``1 / Z`` is an
  affine function of ``d`` and min-max normalised ``d`` *is* min-max normalised inverse depth. The
  lens blur grows with ``|1/Z - 1/Z_focus|``, i.e. with ``|d - d_focus|`` — ``doffs`` cancels.
* The 7 % of pixels without ground truth (``inf``: occlusions beside foreground edges, the left
  strip that the right camera does not see, specular spots) are filled along their row with the
  smaller, i.e. farther, of the nearest known values to the left and right: an occlusion hole
  belongs to the background that the nearer object hides in the other view.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTO, DISPARITY = "motorcycle.jpg", "motorcycle_disparity.png"
JPEG_QUALITY = 92  # as the other photos in this folder


def fill_from_background(disparity: np.ndarray) -> np.ndarray:
    """Unknown (non-finite) pixels take the smaller of the nearest known values left and right on
    their row (the farther surface); (H, W) float64 with no unknowns left."""
    d = np.asarray(disparity, np.float64)
    known = np.isfinite(d)
    h, w = d.shape
    cols = np.arange(w)
    left = np.maximum.accumulate(np.where(known, cols, -1), axis=1)  # nearest known at or before
    right = np.minimum.accumulate(np.where(known, cols, w)[:, ::-1], axis=1)[:, ::-1]  # at or after
    rows = np.arange(h)[:, None]
    from_left = np.where(left >= 0, d[rows, np.clip(left, 0, w - 1)], np.inf)
    from_right = np.where(right < w, d[rows, np.clip(right, 0, w - 1)], np.inf)
    filled = np.where(known, d, np.minimum(from_left, from_right))
    if not np.isfinite(filled).all():
        raise ValueError("a row has no known disparity at all; nothing to fill it from")
    return filled


def disparity_png16(disparity_px: np.ndarray) -> np.ndarray:
    """(H, W) uint16: holes filled, then ``round((d - min) / (max - min) · 65535)``, 1 = nearest."""
    d = fill_from_background(disparity_px)
    lo, hi = d.min(), d.max()
    return np.round((d - lo) / (hi - lo) * 65535.0).astype(np.uint16)


def build() -> tuple[np.ndarray, np.ndarray]:
    """(photo (500, 741, 3) uint8, disparity (500, 741) uint16) from the installed scikit-image."""
    from skimage.data import stereo_motorcycle

    left, _right, disparity = stereo_motorcycle()
    return np.ascontiguousarray(left), disparity_png16(disparity)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    args = parser.parse_args(argv)
    photo, disparity = build()
    args.out.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed: a reader never sees half a file.
    for name, image, params in ((PHOTO, Image.fromarray(photo), {"quality": JPEG_QUALITY}),
                                (DISPARITY, Image.fromarray(disparity), {})):
        tmp = args.out / f".{name}.tmp"
        image.save(tmp, format="JPEG" if name.endswith(".jpg") else "PNG", **params)
        tmp.replace(args.out / name)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
