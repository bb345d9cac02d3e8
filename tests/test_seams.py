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
from render_metrics import seam_residual, shaded_sphere

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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
