"""Partial occlusion in the classical renderer: hidden surfaces behind blurred edges.

The ground truth is the thin-lens ray tracer over complete layers (magicbokeh.data.raytrace): the
surface hidden behind a blurred foreground edge really exists there and shows through the blurred
rim. The renderer only sees the front surface and must fill the hidden part plausibly.
"""

import math

import numpy as np
import pytest

from conftest import textured
from magicbokeh.colour import srgb_to_linear
from magicbokeh.data.raytrace import render_thin_lens
from magicbokeh.lens_blur import render_lens_blur
from magicbokeh.lens_blur_fill import edge_distance
from layered_scenes import occlusion_edge_masks, psnr, three_layer_scene

K = 24.0


@pytest.fixture(scope="module")
def scene():
    return three_layer_scene(176, seed=0)


@pytest.mark.parametrize("focus", [0.1, 0.5, 0.9], ids=["focus-far", "focus-middle", "focus-near"])
def test_three_layers_match_ray_tracer_near_occlusion_edges(scene, focus):
    layers, image, disparity = scene
    truth = render_thin_lens(layers, focus, K)
    interior, near_edge = occlusion_edge_masks(disparity, focus, K)
    filled = render_lens_blur(image, disparity, focus, K)
    unfilled = render_lens_blur(image, disparity, focus, K, fill_hidden=False)
    near = psnr(filled, truth, interior & near_edge)
    assert near >= 34.0
    assert near >= psnr(unfilled, truth, interior & near_edge) + 2.0  # the fill is what helps
    assert psnr(filled, truth, interior & ~near_edge) >= 48.0  # and changes nothing elsewhere


def chord_share(x: float, r: float) -> float:
    """Share of a disc of radius r beyond a straight line at distance x from its centre."""
    t = min(max(x / r, -1.0), 1.0)
    return (math.acos(t) - t * math.sqrt(1.0 - t * t)) / math.pi


def test_background_shows_through_the_inner_half_of_a_blurred_edge():
    """A blurred red square over a sharp uniform blue wall: inside the square's edge, the wall's
    share of the light is the share of the lens disc that misses the square."""
    h, w, r = 120, 120, 12.0
    img = np.full((h, w, 3), (0.1, 0.3, 0.9), np.float32)
    disp = np.full((h, w), 0.2, np.float32)
    img[30:90, 30:90] = (0.9, 0.1, 0.1)
    disp[30:90, 30:90] = 0.2 + r / K
    blue = srgb_to_linear(np.float32(0.9))
    red_blue = srgb_to_linear(np.float32(0.1))
    for fill in (True, False):
        out = srgb_to_linear(render_lens_blur(img, disp, 0.2, K, fill_hidden=fill))
        shares = []
        for inside in (0, 3, 6, 9):  # pixels inside the square's left edge, on its middle row
            x = inside + 0.5  # distance from the edge to the pixel centre
            share = (out[60, 30 + inside, 2] - red_blue) / (blue - red_blue)
            shares.append((share, chord_share(x, r)))
        if fill:
            for share, expected in shares:
                assert share == pytest.approx(expected, abs=0.04)
        else:  # the former behaviour: the hidden wall takes the square's colour
            assert all(share < 0.5 * expected for share, expected in shares if expected > 0.05)


def test_sharp_foreground_keeps_exact_colours_over_filled_background(scene):
    layers, image, disparity = scene
    out = render_lens_blur(image, disparity, 0.9, K)  # near disc sharp, the rest blurred
    near = disparity == 0.9
    assert np.abs(out[near] - image[near]).max() <= 1 / 255  # incl. its edge pixels: no halo
    # Just outside the disc, the blurred far plane is not pulled towards the disc's red: the
    # hidden far plane is filled with its own colours (red channel of the plane's base: 0.25).
    ring = (np.abs(disparity - 0.9) > 0) & _dilate(near, 4) & (disparity == 0.1)
    assert out[ring][:, 0].mean() < image[disparity == 0.1][:, 0].mean() + 0.05


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), ker).astype(bool)


def test_continuous_surfaces_are_not_filled():
    """No depth discontinuity (ramps, smooth fields): the fill leaves the render bit-identical."""
    img = textured(96, 96, seed=7)
    ramp = np.tile(np.linspace(0, 1, 96, dtype=np.float32)[:, None], (1, 96))
    # Bumps whose CoC radius changes by at most 0.84 px per pixel at K = 32 (a steep surface).
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32) * np.float32(2 * np.pi / 96)
    bumps = (0.5 + 0.4 * np.sin(xx) * np.sin(yy)).astype(np.float32)
    for disp in (ramp, bumps):
        a = render_lens_blur(img, disp, 0.5, 32)
        b = render_lens_blur(img, disp, 0.5, 32, fill_hidden=False)
        assert np.array_equal(a, b)
    # ...whereas a depth step does change it.
    step = np.where(ramp > 0.5, 0.9, 0.1).astype(np.float32)
    assert not np.array_equal(render_lens_blur(img, step, 0.1, 32), render_lens_blur(img, step, 0.1, 32, fill_hidden=False))


def test_fill_adds_no_light_of_its_own():
    """One flat colour at several depths: every mix of it, filled or not, is that colour."""
    h, w = 100, 100
    img = np.full((h, w, 3), (0.3, 0.6, 0.2), np.float32)
    disp = np.full((h, w), 0.1, np.float32)
    disp[20:60, 20:70] = 0.5
    disp[45:85, 50:90] = 0.95
    for focus in (0.1, 0.5, 0.95):
        out = render_lens_blur(img, disp, focus, 32)
        assert np.abs(out - img).max() < 2e-3


def test_fill_on_tiny_images_uses_the_layers_own_colour():
    """A 16 px frame: the pyramid is only a few levels deep, the fill must still be the layer's colour."""
    img = np.full((16, 16, 3), (0.2, 0.7, 0.4), np.float32)
    disp = np.full((16, 16), 0.1, np.float32)
    img[4:12, 9:16] = (0.9, 0.1, 0.1)
    disp[4:12, 9:16] = 0.9
    out = render_lens_blur(img, disp, 0.1, 8)  # background sharp, the red block blurred by 6.4 px
    # Inside the block's blurred rim, what shows through is the green background, never black.
    assert out[8, 9, 1] > 0.3 and out[8, 9].min() > 0.05


def test_edge_distances_on_cells_stay_within_two_pixels_of_the_exact_distance():
    """The band's distances are measured on 2 x 2 cells (a quarter of the work): every pixel's is
    within 2 px of its exact Euclidean distance to the edge pixels, and 0 in the edge's own cells."""
    rng = np.random.default_rng(4)
    h, w = 61, 83
    box = (2, h, 4, w)  # starts on even coordinates, ends anywhere
    ey, ex = rng.integers(box[0], h, 12), rng.integers(box[2], w, 12)
    dist = edge_distance(ey * w + ex, w, box)
    yy, xx = np.mgrid[box[0] : box[1], box[2] : box[3]]
    exact = np.sqrt((yy[..., None] - ey) ** 2 + (xx[..., None] - ex) ** 2).min(axis=-1)
    per_pixel = np.repeat(np.repeat(dist, 2, axis=0), 2, axis=1)[: h - 2, : w - 4]
    assert np.abs(per_pixel - exact).max() <= 2.0
    assert np.all(per_pixel[ey - box[0], ex - box[2]] == 0)


def test_layer_light_on_cells_sums_its_pixels():
    """The fill's colours start from each 2 x 2 cell's summed light: the sums keep every pixel's
    light exactly once, also in the half-empty cells past an odd box's edge."""
    from magicbokeh.lens_blur_layers import build_layers, layer_light, layer_light_cells

    rng = np.random.default_rng(8)
    radius = rng.uniform(-3, 3, (21, 27)).astype(np.float32)
    layers = build_layers(radius, rng.random((21, 27, 3)).astype(np.float32), fill_hidden=False)
    box = (4, 21, 6, 27)  # 17 x 21 px: 9 x 11 cells, the last row and column half empty
    for layer in range(-3, 4):
        sums = layer_light_cells(layers, layer, box)
        light = layer_light(layers, layer, box)
        assert sums.shape == (9, 11, 4)
        np.testing.assert_allclose(sums.sum(axis=(0, 1)), light.sum(axis=(0, 1)), rtol=1e-5)
        np.testing.assert_allclose(sums[2, 3], light[4:6, 6:8].sum(axis=(0, 1)), rtol=1e-6)
        np.testing.assert_allclose(sums[8, 10], light[16, 20], rtol=1e-6)  # the corner cell's one pixel
