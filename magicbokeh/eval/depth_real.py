"""The ``real`` depth dataset: real photos with measured depth that installable packages ship.

Nothing is downloaded and nothing is committed: the frames come from packages installed here
(``pip install scikit-image``; it is in requirements-test.txt).

* ``middlebury2014_motorcycle`` — ``skimage.data.stereo_motorcycle()``, bundled in the scikit-image
  wheel: the left view of Middlebury 2014 "Motorcycle" (500 × 741, the benchmark's images
  downscaled ×4) and its ground-truth disparity from structured light, in pixels, ``inf`` where
  unknown (7.3 % of the pixels), as in Middlebury's PFM files (scikit-image's docstring says NaN; any
  non-finite value counts as invalid). Calibration at this size,
  from Middlebury's ``calib.txt`` ÷ 4: f = 994.978 px, baseline B = 193.001 mm, doffs = 31.086 px
  (the principal points' x offset between the two cameras). Depth is ``Z = f · B / (d + doffs)``,
  2.11–5.02 m here; plain ``1 / d`` would drop ``doffs`` and turn that 2.4 : 1 range into 8.3 : 1.

Scored with the same protocol as NYUv2 (:mod:`magicbokeh.eval.depth_metrics`): the prediction is
fitted by scale and shift to ``1 / Z``, which is itself affine in ``d`` — so the fit is the one a
fit to the pixel disparity would give — and the metrics are computed in metres on ``Z``. Range
1e-3–10 m (indoors, as NYUv2), no crop: the left image's unmatched strip is already invalid.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import MagicBokehError

REAL_MIN_DEPTH, REAL_MAX_DEPTH = 1e-3, 10.0

#: Middlebury 2014 Motorcycle at scikit-image's size (calib.txt: f 3979.911, doffs 124.343, ÷ 4).
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_M = 0.193001
MOTORCYCLE_DOFFS_PX = 31.086


def disparity_to_depth(disparity_px: np.ndarray, focal_px: float, baseline_m: float, doffs_px: float) -> np.ndarray:
    """Stereo depth in metres from disparity in pixels: ``Z = f · B / (d + doffs)``.

    Non-finite disparity (NaN or inf, the benchmarks' "unknown") and ``d + doffs <= 0`` give NaN,
    which the protocol treats as invalid.
    """
    d = np.asarray(disparity_px, np.float64)
    denom = d + doffs_px
    ok = np.isfinite(d) & (denom > 0)
    depth = np.full(d.shape, np.nan)
    depth[ok] = focal_px * baseline_m / denom[ok]
    return depth.astype(np.float32)


def _motorcycle() -> tuple[np.ndarray, np.ndarray]:
    from skimage.data import stereo_motorcycle

    left, _right, disparity = stereo_motorcycle()
    depth = disparity_to_depth(disparity, MOTORCYCLE_FOCAL_PX, MOTORCYCLE_BASELINE_M, MOTORCYCLE_DOFFS_PX)
    return np.ascontiguousarray(left), depth


@dataclass(frozen=True)
class RealFrame:
    """A frame of the ``real`` dataset: its name, the package that ships it, and its reader
    (RGB (H, W, 3) uint8 and depth (H, W) float32 metres, NaN = invalid)."""

    name: str
    package: str
    read: Callable[[], tuple[np.ndarray, np.ndarray]]


#: The frames, in the dataset's order (the degradation seed offset is the position here).
REAL_FRAMES: tuple[RealFrame, ...] = (
    RealFrame("middlebury2014_motorcycle", "skimage", _motorcycle),
)


def installed(frame: RealFrame) -> bool:
    """Whether the package that ships ``frame`` can be imported here (nothing is imported)."""
    return importlib.util.find_spec(frame.package) is not None


def read_real(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One frame by name: RGB (H, W, 3) uint8 and depth (H, W) float32 metres (NaN = invalid)."""
    for frame in REAL_FRAMES:
        if frame.name == name:
            if not installed(frame):
                raise MagicBokehError(f"{name} ships with {frame.package}, which is not installed.")
            return frame.read()
    raise MagicBokehError(f"no real frame named {name!r}; known: {', '.join(f.name for f in REAL_FRAMES)}.")
