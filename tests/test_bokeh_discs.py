"""Crisp bokeh: a point light off the focal plane becomes the aperture's shape with a hard rim.

A real lens images a point light as a uniformly lit copy of its aperture with about one pixel of
anti-aliasing at the rim. Measured on the linear-light output of a single bright pixel:

* rim width = (area above 10 % of the plateau - area above 50 %) / perimeter, in pixels: the mean
  distance from the 50 % to the 10 % contour (a blur built on a coarse grid and upsampled gave 4.6);
* radius = that of the shape whose area is the area above 50 % (for a polygon, its circumradius);
* light = the sum over the frame, against the light put in.
"""

import numpy as np
import pytest

from magicbokeh.apertures import DiskAperture, PolygonAperture
from magicbokeh.colour import srgb_to_linear
from magicbokeh.lens_blur import render_lens_blur
from render_metrics import disc_metrics, point_light_scene

K = 32.0
POWER = 1.0  # the point light, linear light (sRGB 1.0)


def render_point(radius: float, aperture) -> np.ndarray:
    """Linear red channel of one bright pixel on black, rendered at CoC ``radius`` (px)."""
    img, disp, focus = point_light_scene(radius, K)
    return srgb_to_linear(render_lens_blur(img, disp, focus, K, aperture=aperture))[..., 0]


APERTURES = [(DiskAperture(), 0), (PolygonAperture(6, 0.0), 6), (PolygonAperture(5, 18.0), 5)]


@pytest.mark.parametrize("radius", [4.0, 6.0, 10.0, 20.0, 32.0])
@pytest.mark.parametrize("aperture,blades", APERTURES, ids=["disc", "hexagon", "pentagon"])
def test_point_light_gives_a_crisp_disc_of_the_right_size_and_light(radius, aperture, blades):
    lin = render_point(radius, aperture)
    rim, measured, light = disc_metrics(lin, blades)
    assert rim <= 2.0
    assert measured == pytest.approx(radius, abs=0.5)
    assert light == pytest.approx(POWER, rel=0.02)


def test_fractional_radius_stays_crisp():
    """Between two layer radii a pixel is split between them: two rims 1 px apart, still crisp."""
    lin = render_point(17.5, DiskAperture())
    rim, measured, light = disc_metrics(lin, 0)
    assert rim <= 2.0
    assert measured == pytest.approx(17.5, abs=0.5)
    assert light == pytest.approx(POWER, rel=0.02)
