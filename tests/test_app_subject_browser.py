"""The subject click in a real browser (Debian's Chromium through Playwright): a click selects the
subject (GrabCut here: the tests run offline, without SAM weights), the photo shows the overlay, and
the render keeps the subject sharp and says so. Skipped without /usr/bin/chromium."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest_app import app_url  # noqa: F401  (fixture)
from test_app_browser import CHROMIUM, _click_natural_pixel, _wait_loaded, browser, page  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
    pytest.mark.filterwarnings("ignore:Examples will be cached but not all"),
]


def test_a_click_selects_the_subject_shows_it_and_keeps_it_sharp(page, tmp_path):  # noqa: F811
    rgb = np.full((240, 360, 3), 200, np.uint8)
    rgb[::8, :, :] = 120  # some texture in the background
    rgb[60:180, 100:260] = (220, 40, 40)  # a flat red subject
    photo = tmp_path / "subject.png"
    Image.fromarray(rgb).save(photo)
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    _wait_loaded(page, "#input-image img", (360, 240))
    assert page.locator("#keep-subject input").is_checked() is False
    _click_natural_pixel(page, "#input-image img", 180, 120)  # default mode: add to subject
    # The photo is replaced by the overlay (its pixels change), the option turns on, and the render
    # that follows names the subject focus.
    page.wait_for_function("() => document.querySelector('#input-image img').src.includes('photo_subject')")
    page.locator("#keep-subject input:checked").wait_for()
    page.locator("#status").get_by_text("subject under 1 point(s)").wait_for(timeout=60_000)
    status = page.locator("#status").inner_text()
    assert "GrabCut" in status and "whole subject kept sharp" in status
    assert page.locator("#focus-x input").input_value() == ""
    page.get_by_role("button", name="Clear points").click()
    page.locator("#status").get_by_text("nearest large region").wait_for(timeout=60_000)
