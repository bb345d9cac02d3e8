"""Aperture shapes: anti-aliased blur kernels for the classical renderer.

An aperture turns a circle-of-confusion radius (pixels) into a normalised 2-D kernel. For polygons
the radius is the circumradius (distance from centre to a blade corner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import MagicBokehError
from .settings import BLADES_RANGE


@dataclass(frozen=True)
class DiskAperture:
    """A round aperture: the kernel is a disc of the given radius."""

    def kernel(self, radius_px: float) -> np.ndarray:
        """(n, n) float32 kernel summing to 1; a single 1 for radius < 0.5 px."""
        return _kernel(round(float(radius_px), 4), 0, 0.0)

    def describe(self) -> str:
        return "circle"


@dataclass(frozen=True)
class PolygonAperture:
    """A polygonal aperture with ``blades`` straight blades, rotated by ``rotation_deg``."""

    blades: int = 6
    rotation_deg: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = BLADES_RANGE
        if not (lo <= int(self.blades) <= hi):
            raise MagicBokehError(f"blades={self.blades} is outside [{lo}, {hi}].")

    def kernel(self, radius_px: float) -> np.ndarray:
        """(n, n) float32 kernel summing to 1, a regular polygon of circumradius ``radius_px``."""
        return _kernel(round(float(radius_px), 4), int(self.blades), float(self.rotation_deg) % 360.0)

    def describe(self) -> str:
        return f"{self.blades}-blade polygon, rotated {self.rotation_deg:g} deg"


Aperture = DiskAperture | PolygonAperture


def make_aperture(shape: str = "circle", *, blades: int = 6, rotation_deg: float = 0.0) -> Aperture:
    """Aperture from user words: ``circle`` or ``polygon`` (with ``blades`` and ``rotation_deg``)."""
    if shape in ("circle", "disk", "disc"):
        return DiskAperture()
    if shape == "polygon":
        return PolygonAperture(blades=int(blades), rotation_deg=float(rotation_deg))
    raise MagicBokehError(f"unknown aperture shape {shape!r}; choose circle or polygon.")


def edge_radius(theta: np.ndarray, radius: float, blades: int, rotation_deg: float) -> np.ndarray:
    """Distance from the centre to the aperture edge in direction ``theta`` (radians)."""
    if blades == 0:
        return np.full_like(theta, radius)
    sector = 2.0 * math.pi / blades
    local = np.mod(theta - math.radians(rotation_deg), sector)
    # A regular polygon of circumradius R: R * cos(pi/n) / cos(local - pi/n), local in [0, 2pi/n).
    return radius * math.cos(math.pi / blades) / np.cos(local - math.pi / blades)


@lru_cache(maxsize=256)
def _kernel(radius: float, blades: int, rotation_deg: float) -> np.ndarray:
    if radius < 0.5:
        return np.ones((1, 1), np.float32)
    half = int(math.ceil(radius + 0.5))
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    dist = np.hypot(xs, ys)
    edge = edge_radius(np.arctan2(ys, xs), radius, blades, rotation_deg)
    # Coverage of each pixel by the shape, approximated by a 1-px linear ramp across the edge:
    # this anti-aliases the rim so small discs keep their area and large ones stay crisp.
    weights = np.clip(edge + 0.5 - dist, 0.0, 1.0)
    # Drop all-zero outer rings (the disc ends at radius + 0.5, short of the grid's corners and
    # often of its last row): the kernel is unchanged, but convolution cost grows with its area,
    # and OpenCV switches to a much slower DFT path above ~11 x 11 taps.
    nonzero = np.nonzero(weights)
    trim = int(min(nonzero[0].min(), nonzero[1].min(), 2 * half - nonzero[0].max(), 2 * half - nonzero[1].max()))
    if trim > 0:
        weights = weights[trim:-trim, trim:-trim]
    weights /= weights.sum()
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out
