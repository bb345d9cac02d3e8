"""Scenes and image measures of the classical renderer shared by the tests and
``bench/bench_classical.py``: seam residual on a shaded sphere, and the rim width / radius / light
of a rendered point light."""

from __future__ import annotations

import math

import cv2
import numpy as np


def seam_residual(rgb: np.ndarray) -> np.ndarray:
    """(H, W) max over channels of |x - median5(x)| on the 8-bit image, in levels."""
    u8 = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    return np.abs(u8.astype(np.int16) - cv2.medianBlur(u8, 5).astype(np.int16)).max(axis=-1)


def point_light_scene(radius: float, k: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(image, disparity, focus): one bright pixel on black, on a plane at CoC ``radius`` px.

    The frame leaves a radius of margin around the disc, so border normalisation never touches it.
    """
    size = 4 * int(radius) + 31
    img = np.zeros((size, size, 3), np.float32)
    img[size // 2, size // 2] = 1.0
    disp = np.full((size, size), radius / k, np.float32)  # focus on the farthest plane, 0
    return img, disp, 0.0


def shape_area_perimeter(radius: float, blades: int) -> tuple[float, float]:
    """Area and perimeter of a disc (``blades`` = 0) or a regular polygon of circumradius ``radius``."""
    if blades == 0:
        return math.pi * radius**2, 2 * math.pi * radius
    return 0.5 * blades * radius**2 * math.sin(2 * math.pi / blades), 2 * blades * radius * math.sin(math.pi / blades)


def disc_metrics(lin: np.ndarray, blades: int) -> tuple[float, float, float]:
    """(rim width px, radius px, light sum) of a rendered point light, linear light (H, W).

    Rim width = (area above 10 % of the plateau - area above 50 %) / perimeter: the mean distance
    from the 50 % to the 10 % contour. Radius: of the shape whose area is the area above 50 %.
    """
    lin = np.asarray(lin, np.float64)
    plateau = np.median(lin[lin > 0.3 * lin.max()])
    a50 = float((lin > 0.5 * plateau).sum())
    a10 = float((lin > 0.1 * plateau).sum())
    unit_area, unit_perimeter = shape_area_perimeter(1.0, blades)
    radius = math.sqrt(a50 / unit_area)
    return (a10 - a50) / (unit_perimeter * radius), radius, float(lin.sum())


def shaded_sphere(size: int = 160, radius: float = 55.0):
    """A Lambert-shaded red sphere in front of a bright textured far plane.

    Returns (image sRGB float32, disparity float32, sphere mask); the sphere's disparity grows
    smoothly from 0.6 at its silhouette to 0.75 at its centre, the plane is at 0.1.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + np.float32(0.5)
    c = size / 2
    rho2 = ((xs - c) ** 2 + (ys - c) ** 2) / radius**2
    inside = rho2 < 1.0
    nz = np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    nx, ny = (xs - c) / radius, (ys - c) / radius
    light = np.array([-0.4, -0.5, 0.77], np.float32)
    shade = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
    sphere_lin = (0.05 + 0.9 * shade)[..., None] * np.float32([0.8, 0.12, 0.1])
    rng = np.random.default_rng(3)
    plane = cv2.resize(rng.random((size // 10, size // 10, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    plane = np.clip(0.55 + 0.4 * plane, 0.0, 1.0)  # sRGB, much lighter than the sphere
    sphere_srgb = np.where(sphere_lin <= 0.0031308, 12.92 * sphere_lin, 1.055 * sphere_lin ** (1 / 2.4) - 0.055)
    image = np.where(inside[..., None], sphere_srgb, plane).astype(np.float32)
    disparity = np.where(inside, 0.6 + 0.15 * nz, 0.1).astype(np.float32)
    return image, disparity, inside
