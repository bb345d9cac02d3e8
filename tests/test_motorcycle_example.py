"""The "real photo, measured depth" example: the committed files are what examples/make_motorcycle.py
writes from the Middlebury 2014 motorcycle that scikit-image ships, and its disparity is the
measured one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_script():
    spec = importlib.util.spec_from_file_location("make_motorcycle", EXAMPLES / "make_motorcycle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_holes_take_the_farther_known_neighbour_on_their_row():
    fill = load_script().fill_from_background
    inf = np.inf
    d = np.array([[5.0, inf, inf, 2.0, 7.0],   # occlusion beside a near object: the far side wins
                  [inf, inf, 3.0, inf, 9.0],   # a left-edge strip takes its only neighbour
                  [4.0, 6.0, inf, inf, inf]])  # fmt: skip
    np.testing.assert_array_equal(fill(d), [[5, 2, 2, 2, 7], [3, 3, 3, 3, 9], [4, 6, 6, 6, 6]])
    with pytest.raises(ValueError, match="no known disparity"):
        fill(np.array([[1.0, 2.0], [inf, inf]]))


def test_committed_example_is_the_measured_disparity_of_the_photo(tmp_path):
    data = pytest.importorskip("skimage.data")
    left, _right, disp = data.stereo_motorcycle()
    photo = cv2.imread(str(EXAMPLES / "motorcycle.jpg"), cv2.IMREAD_COLOR)[..., ::-1]
    png = cv2.imread(str(EXAMPLES / "motorcycle_disparity.png"), cv2.IMREAD_UNCHANGED)
    assert photo.shape == left.shape == (500, 741, 3) and png.dtype == np.uint16 and png.shape == (500, 741)
    mse = np.mean((photo.astype(np.float64) - left) ** 2)
    assert 10 * np.log10(255**2 / mse) > 33  # the left view as JPEG quality 92 (36 dB; 2 px off: 20 dB)

    # Where Middlebury measured it, the map is the min-max normalised disparity (1 = nearest).
    known = np.isfinite(disp)
    lo, hi = disp[known].min(), disp[known].max()
    np.testing.assert_allclose(png[known] / 65535.0, (disp[known] - lo) / (hi - lo), atol=1 / 65535)
    assert png[known].max() == 65535 and png[known].min() == 0

    # The script rebuilds the committed map exactly (the photo up to the JPEG encoder).
    script = load_script()
    assert script.main(["--out", str(tmp_path)]) == 0
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "motorcycle_disparity.png"), cv2.IMREAD_UNCHANGED), png)
    rebuilt = cv2.imread(str(tmp_path / "motorcycle.jpg"), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.abs(rebuilt.astype(np.float64) - photo).mean() < 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motorcycle.jpg", "motorcycle_disparity.png"]


def test_example_renders_with_the_motorcycle_in_focus():
    from magicbokeh.pipeline import Focus, RenderSettings, render

    res = render(str(EXAMPLES / "motorcycle.jpg"), depth=str(EXAMPLES / "motorcycle_disparity.png"),
                 focus=Focus.point(420, 200), settings=RenderSettings(k=24))
    assert res.depth_source.startswith("supplied disparity map") and not res.approximate_depth
    # The tank (in focus) stays as it was; the far shelves (top right) are blurred.
    tank, shelves = (slice(185, 215), slice(400, 440)), (slice(20, 80), slice(560, 700))
    change = np.abs(res.image - res.photo.rgb).mean(axis=2)
    assert change[tank].mean() < 0.01 < 0.03 < change[shelves].mean()
    assert res.disparity[tank].mean() > 0.8 > 0.4 > res.disparity[shelves].mean()
