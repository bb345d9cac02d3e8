"""Physics of the classical renderer: disc sizes, energy, sharp plane, occlusion, identity."""

import math

import numpy as np
import pytest

from conftest import textured
from magicbokeh.apertures import DiskAperture, PolygonAperture, make_aperture
from magicbokeh.colour import linear_to_srgb, srgb_to_linear
from magicbokeh.errors import MagicBokehError
from magicbokeh.lens_blur import render_lens_blur
from magicbokeh.lens_blur_reference import naive_scatter


def point_light(size: int, radius: float, **kwargs) -> np.ndarray:
    """Linear-light red channel of a single bright pixel rendered at CoC ``radius`` (K = 32)."""
    img = np.zeros((size, size, 3), np.float32)
    c = size // 2
    img[c, c] = 1.0
    disp = np.full((size, size), 0.5 + radius / 32.0, np.float32)
    return srgb_to_linear(render_lens_blur(img, disp, 0.5, 32, **kwargs))[..., 0]


def half_max_region(channel: np.ndarray) -> np.ndarray:
    return channel > 0.5 * channel.max()


@pytest.mark.parametrize("radius", [2.0, 5.0, 9.5, 14.0, 23.25, 31.0])
def test_point_light_becomes_disc_of_coc_radius(radius):
    lin = point_light(91, radius)
    area = half_max_region(lin).sum()
    assert math.sqrt(area / math.pi) == pytest.approx(radius, abs=1.0)
    # The disc is round: its half-maximum extent is the same along x and y.
    ys, xs = np.nonzero(half_max_region(lin))
    assert (xs.max() - xs.min()) == pytest.approx(ys.max() - ys.min(), abs=1)


@pytest.mark.parametrize("blades,rotation", [(6, 0.0), (5, 18.0)])
def test_point_light_becomes_polygon(blades, rotation):
    radius = 20.0
    lin = point_light(81, radius, aperture=PolygonAperture(blades, rotation))
    area = half_max_region(lin).sum()
    polygon_area = 0.5 * blades * radius**2 * math.sin(2 * math.pi / blades)
    assert area == pytest.approx(polygon_area, rel=0.06)
    assert area < 0.97 * math.pi * radius**2  # clearly not a disc
    if blades == 6 and rotation == 0.0:
        # Corners point along +-x (circumradius), flat sides face +-y (apothem).
        ys, xs = np.nonzero(half_max_region(lin))
        assert (xs.max() - xs.min()) / 2 == pytest.approx(radius, abs=1.0)
        assert (ys.max() - ys.min()) / 2 == pytest.approx(radius * math.cos(math.pi / 6), abs=1.0)


def test_polygon_orientation_matches_naive_scatter_exactly():
    """Single plane, no downsampling: the layered renderer equals the per-pixel scatter."""
    img = textured(40, 48, seed=3)
    disp = np.full((40, 48), 0.8, np.float32)
    for aperture in (DiskAperture(), PolygonAperture(5, 17.0)):
        fast = render_lens_blur(img, disp, 0.5, 20, aperture=aperture, half_res_radius_px=math.inf)
        slow = naive_scatter(img, disp, 0.5, 20, aperture=aperture)
        assert np.abs(fast - slow).max() < 1e-4


def test_downsampled_large_blur_stays_close_to_naive_scatter():
    img = textured(64, 64, seed=4)
    disp = np.full((64, 64), 0.9, np.float32)  # radius 16 px: blurred at reduced resolution
    fast = render_lens_blur(img, disp, 0.4, 32)
    slow = naive_scatter(img, disp, 0.4, 32)
    assert np.abs(fast - slow).mean() < 0.01


def test_energy_preserved_in_linear_light():
    img = textured(160, 160, seed=1)
    disp = np.full((160, 160), 0.75, np.float32)  # radius 8 px everywhere
    out = render_lens_blur(img, disp, 0.5, 32)
    inner = (slice(20, -20), slice(20, -20))
    before = srgb_to_linear(img)[inner].mean(axis=(0, 1))
    after = srgb_to_linear(out)[inner].mean(axis=(0, 1))
    assert np.allclose(after, before, rtol=0.01)
    assert np.abs(out - img).max() > 0.05  # and it really blurred


def test_focal_range_is_untouched():
    h, w = 96, 128
    img = textured(h, w, seed=2)
    disp = np.full((h, w), 0.15, np.float32)  # far background
    disp[20:70, 20:60] = 0.86  # nearest object, inside the focal range
    disp[30:80, 70:110] = 0.74  # another one, also inside
    out = render_lens_blur(img, disp, 0.8, 24, focal_range=0.2)
    sharp = np.abs(disp - 0.8) <= 0.1
    assert np.abs(out[sharp] - img[sharp]).max() <= 1 / 255
    assert np.abs(out[~sharp] - img[~sharp]).max() > 0.05


def test_sharp_foreground_keeps_exact_colours_at_its_edge():
    h, w = 100, 100
    img = textured(h, w, seed=5)
    img[..., 0] *= 0.2  # background has little red
    disp = np.full((h, w), 0.1, np.float32)
    fg = np.zeros((h, w), bool)
    fg[30:70, 30:70] = True
    img[fg] = (0.95, 0.1, 0.1)
    disp[fg] = 0.9
    out = render_lens_blur(img, disp, 0.9, 32)  # background radius 25.6 px
    assert np.abs(out[fg] - img[fg]).max() <= 1 / 255  # incl. the edge pixels: no bleeding
    ring = np.zeros_like(fg)
    ring[26:74, 26:74] = True
    ring &= ~fg
    # The blurred background next to the subject is not pulled towards the subject's red.
    assert out[ring][:, 0].mean() < 0.35


def test_blurred_foreground_spreads_over_sharp_background():
    h, w = 100, 100
    img = np.full((h, w, 3), (0.1, 0.5, 0.9), np.float32)
    disp = np.full((h, w), 0.1, np.float32)
    fg = np.zeros((h, w), bool)
    fg[40:60, 40:60] = True
    img[fg] = (1.0, 0.0, 0.0)
    disp[fg] = 0.6
    out = render_lens_blur(img, disp, 0.1, 20)  # foreground radius 10 px, background sharp
    near = out[35, 50]  # 5 px outside the foreground's top edge
    assert near[0] > img[35, 50, 0] + 0.1  # picks up the foreground's red
    far = ~np.pad(np.ones((40, 40), bool), 30)  # further than the radius (+ rim) from it
    far[18:82, 18:82] = False
    assert np.abs(out[far] - img[far]).max() <= 1 / 255


def test_k_zero_is_identity():
    img = textured(50, 70)
    disp = np.random.default_rng(0).random((50, 70)).astype(np.float32)
    out = render_lens_blur(img, disp, 0.3, 0)
    assert np.array_equal(out, img)


def test_highlight_boost_brightens_out_of_focus_highlights_only():
    h, w = 81, 81
    img = np.full((h, w, 3), 0.2, np.float32)
    img[40, 40] = 1.0  # a highlight in the background
    img[5:15, 5:15] = 0.95  # a bright in-focus patch
    disp = np.full((h, w), 0.9, np.float32)
    disp[:20, :20] = 0.5
    plain = render_lens_blur(img, disp, 0.5, 16)
    boosted = render_lens_blur(img, disp, 0.5, 16, highlight_boost=True)
    background = srgb_to_linear(np.float32(0.2))
    excess = lambda out: srgb_to_linear(out)[40, 40, 0] - background  # noqa: E731
    assert excess(boosted) > 1.2 * excess(plain) > 0
    assert np.abs(boosted[8:12, 8:12] - img[8:12, 8:12]).max() <= 1 / 255


def test_srgb_round_trip_and_aperture_kernels():
    x = np.linspace(0, 1, 256, dtype=np.float32)
    assert np.abs(linear_to_srgb(srgb_to_linear(x)) - x).max() < 1e-5
    for shape in (DiskAperture(), PolygonAperture(7, 33)):
        for r in (0.2, 1.0, 4.5, 12.0):
            kern = shape.kernel(r)
            assert kern.sum() == pytest.approx(1.0, abs=1e-5)
            assert kern.shape[0] % 2 == 1
    with pytest.raises(MagicBokehError):
        make_aperture("star")
    with pytest.raises(MagicBokehError):
        PolygonAperture(2)


def test_kernels_have_no_empty_outer_ring_and_keep_their_full_support():
    """Kernels are trimmed to their support (convolution cost grows with the kernel's area)."""
    for r in (1.0, 2.3, 5.0, 7.5, 11.0, 16.0):
        kern = DiskAperture().kernel(r)
        # The anti-aliased disc covers exactly the offsets closer than r + 0.5 (counted on a grid
        # wider than any kernel, so trimming too far would show).
        wide = int(math.ceil(r)) + 3
        ys, xs = np.mgrid[-wide : wide + 1, -wide : wide + 1]
        assert np.count_nonzero(kern) == np.count_nonzero(np.hypot(xs, ys) < r + 0.5)
        for shape in (DiskAperture(), PolygonAperture(5, 17.0)):
            k = shape.kernel(r)
            border = np.concatenate([k[0], k[-1], k[:, 0], k[:, -1]])
            assert border.max() > 0


def test_result_does_not_depend_on_the_thread_count():
    """OpenCV splits convolutions and DFTs over threads; the render must not change (1 level)."""
    import cv2

    img = textured(120, 140, seed=6)
    disp = np.full((120, 140), 0.2, np.float32)
    disp[30:90, 40:100] = 0.85  # a blurred foreground block over a blurred background
    before = cv2.getNumThreads()
    try:
        renders = []
        for threads in (1, 2, 4):
            cv2.setNumThreads(threads)
            renders.append(render_lens_blur(img, disp, 0.5, 32, highlight_boost=True))
    finally:
        cv2.setNumThreads(before)
    for out in renders[1:]:
        assert np.abs(out - renders[0]).max() <= 1 / 255
