"""No seams: smooth in-focus or slightly defocused surfaces render as smoothly as they were shot.

Seam measure: |out - median5(out)| in 8-bit levels, per channel, inside the surface (away from its
silhouette). A smooth surface has almost none in the input; layer junctions inside it used to show
as thin rings of up to 25 levels (hidden-surface fill seen through a gap between neighbouring
layers' occlusion).
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from magicbokeh.focus import focus_from_point
from magicbokeh.lens_blur import render_lens_blur

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def seam_residual(rgb: np.ndarray) -> np.ndarray:
    """(H, W) max over channels of |x - median5(x)| on the 8-bit image, in levels."""
    u8 = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    return np.abs(u8.astype(np.int16) - cv2.medianBlur(u8, 5).astype(np.int16)).max(axis=-1)


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


@pytest.mark.parametrize("boost", [False, True], ids=["plain", "highlight-boost"])
@pytest.mark.parametrize("focus", [0.75, 0.7], ids=["in-focus", "slightly-defocused"])
def test_shaded_sphere_in_front_of_a_far_plane_has_no_seams(focus, boost):
    image, disparity, inside = shaded_sphere()
    out = render_lens_blur(image, disparity, focus, 24, highlight_boost=boost)
    # The surface itself, away from its silhouette (where the blurred plane legitimately mixes in).
    core = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert seam_residual(out)[core].max() <= seam_residual(image)[core].max() + 2
    assert np.abs(out[~inside] - image[~inside]).max() > 0.05  # and the plane really is blurred


@pytest.mark.parametrize("boost", [False, True], ids=["plain", "highlight-boost"])
def test_synthetic_example_in_focus_sphere_has_no_seams(boost):
    """The README's hero example: focus 218,470 (the red sphere), K = 24."""
    from PIL import Image

    image = np.asarray(Image.open(EXAMPLES / "synthetic_scene.png").convert("RGB"), np.float32) / 255
    disparity = np.asarray(Image.open(EXAMPLES / "synthetic_scene_disparity.png"), np.float32) / 65535
    focus = focus_from_point(disparity, 218, 470)
    out = render_lens_blur(image, disparity, focus, 24, highlight_boost=boost)
    radius = 24 * (disparity - focus)
    red = (np.abs(radius) < 4) & (image[..., 0] > image[..., 1] + 0.15)
    sphere = cv2.erode(red.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert sphere.sum() > 20000  # the sphere, not a few stray pixels
    assert seam_residual(out)[sphere].max() <= seam_residual(image)[sphere].max() + 2
