"""The app in a real browser: Playwright's Python package driving Debian's /usr/bin/chromium.

Uploads a photo and its disparity map, clicks a known pixel, checks the focus readout and the
before/after slider, runs a lazily cached example, and takes a screenshot. The README's
docs/screenshot.png is refreshed with ``MAGICBOKEH_SCREENSHOT=docs/screenshot.png``; otherwise the
screenshot goes to a temporary folder, so a test run never edits tracked files.
Skipped only when /usr/bin/chromium is missing (CI installs it with apt).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from conftest_app import EXAMPLES, ROOT, app_url  # noqa: F401  (app_url is a fixture)

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_MAX_BYTES = 500_000
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
    pytest.mark.filterwarnings("ignore:Examples will be cached but not all"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, app_url):  # noqa: F811 (fixture imported from conftest_app)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(30_000)
    # Gradio keeps a heartbeat request open, so "networkidle" never comes: wait for the UI instead.
    page.goto(app_url, wait_until="load")
    page.locator("#input-image").wait_for(state="visible")
    yield page
    context.close()


def _natural_size(page, selector: str) -> tuple[int, int]:
    return tuple(page.locator(selector).evaluate("i => [i.naturalWidth, i.naturalHeight]"))


def _wait_loaded(page, selector: str, size: tuple[int, int] | None = None) -> None:
    """Wait until every image matching ``selector`` has loaded (and has ``size``, when given)."""
    want = "null" if size is None else f"[{size[0]}, {size[1]}]"
    page.wait_for_function(
        f"""() => {{
            const imgs = [...document.querySelectorAll({selector!r})];
            const want = {want};
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0 &&
                (want === null || (i.naturalWidth === want[0] && i.naturalHeight === want[1])));
        }}"""
    )


def _click_natural_pixel(page, selector: str, x: int, y: int) -> None:
    """Click the displayed image at natural pixel (x, y), using Gradio's own letterbox mapping."""
    img = page.locator(selector)
    nw, nh = _natural_size(page, selector)
    box = img.bounding_box()
    scale = min(box["width"] / nw, box["height"] / nh, 1.0)
    dx = (box["width"] - nw * scale) / 2
    dy = (box["height"] - nh * scale) / 2
    img.click(position={"x": dx + x * scale, "y": dy + y * scale})


def _readout(page) -> tuple[int, int]:
    x = page.locator("#focus-x input").input_value()
    y = page.locator("#focus-y input").input_value()
    return int(float(x)), int(float(y))


def test_example_click_renders_with_its_preset_focus(page):
    page.get_by_role("button", name="Coffee (CC0)").click()
    _wait_loaded(page, "#result-slider img", (600, 400))
    assert _readout(page) == (280, 140)
    assert page.locator("#k-slider input[type=number]").input_value() == "24"
    page.locator("#status").get_by_text("pixel (280, 140)").wait_for()
    _wait_loaded(page, "#disparity-view img", (600, 400))


def test_upload_click_render_and_screenshot(page, tmp_path):
    # No click yet: the readout is empty, which means automatic focus.
    page.wait_for_function("() => document.querySelector('#focus-x input').value === ''")
    photo = EXAMPLES / "synthetic_scene.png"
    size = Image.open(photo).size  # (960, 640)
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    _wait_loaded(page, "#input-image img", size)

    # The true disparity map lives in the Advanced accordion.
    page.locator("#advanced .label-wrap").first.click()
    page.locator("#disparity-file input[type=file]").set_input_files(
        str(EXAMPLES / "synthetic_scene_disparity.png"))
    page.locator("#disparity-file").get_by_text("synthetic_scene_disparity.png").wait_for()
    page.get_by_label("Highlight boost").check()  # the wall lights bloom into bokeh discs
    page.locator("#advanced .label-wrap").first.click()  # fold it again for the screenshot

    target = (218, 470)  # the red sphere, in the photo's own pixels
    page.locator("#click-mode").get_by_text("Focus on a pixel").click()  # not the subject selection
    _click_natural_pixel(page, "#input-image img", *target)
    page.wait_for_function("() => document.querySelector('#focus-x input').value !== ''")
    fx, fy = _readout(page)
    assert abs(fx - target[0]) <= 1 and abs(fy - target[1]) <= 1
    # The marker is drawn on a full-resolution copy, so later clicks keep the same pixel grid.
    page.wait_for_function("() => document.querySelector('#input-image img').src.endsWith('.png')")
    _wait_loaded(page, "#input-image img", size)

    page.locator("#k-slider input[type=number]").fill("24")
    page.get_by_role("button", name="Render", exact=True).click()
    page.locator("#status").get_by_text(f"pixel ({fx}, {fy})").wait_for()
    page.locator("#status").get_by_text("K = 24").wait_for()
    page.locator("#status").get_by_text("supplied disparity map (synthetic_scene_disparity.png)").wait_for()
    _wait_loaded(page, "#result-slider img", size)
    assert page.locator("#result-slider img").count() == 2
    _wait_loaded(page, "#disparity-view img", size)

    page.wait_for_timeout(300)  # let the slider finish its layout before the picture
    png = page.screenshot(full_page=True)
    target = Path(os.environ.get("MAGICBOKEH_SCREENSHOT") or tmp_path / "screenshot.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    assert shot.width == 1280 and shot.height > 900
    _save_small_png(shot, target)
    assert target.stat().st_size < SCREENSHOT_MAX_BYTES


def _save_small_png(image: Image.Image, path: Path) -> None:
    """Save a screenshot under the size budget: lossless if it fits, else a 256-colour palette."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() >= SCREENSHOT_MAX_BYTES:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                       dither=Image.Dither.FLOYDSTEINBERG).save(buffer, format="PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
