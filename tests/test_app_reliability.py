"""The app under real use: identical concurrent requests, unreadable uploads, stale outputs after a
new photo or an error, honest timings, Enter in the focus fields, processing-size messages, light
sweep previews and the note when a simulated low-quality capture is only blurred."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest_app import EXAMPLES, app, app_url  # noqa: F401  (app_url is a fixture)
from magicbokeh import processing
from magicbokeh.app_settings import AppSettings
from magicbokeh.errors import MagicBokehError
from magicbokeh.ui import handlers as ui_handlers
from magicbokeh.ui import outputs

pytestmark = pytest.mark.filterwarnings("ignore:Examples will be cached but not all")


def _photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    smooth = rng.random((height // 8 + 1, width // 8 + 1, 3))
    return Image.fromarray((np.kron(smooth, np.ones((8, 8, 1)))[:height, :width] * 255).astype(np.uint8))


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _event(name: str, trigger: str | None = None):
    """The app's event whose function is ``name`` (and, when given, whose trigger is ``trigger``)."""
    return [f for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == name
            and (trigger is None or any(t[1] == trigger for t in f.targets))]


# ---------------------------------------------------------------------------------------------
# Identical concurrent requests
# ---------------------------------------------------------------------------------------------


def test_each_response_returns_image_files_of_its_own():
    """Identical requests get distinct, complete files (never a shared path rewritten in place)."""
    s = AppSettings(image=_photo(), focus_x=20, focus_y=30, k=12)
    first, second = app.handlers.render(s), app.handlers.render(s)
    paths = []
    for out in (first, second):
        (before, after), _, view, _, files, _ = out
        assert all(isinstance(p, str) for p in (before, after, view, *files))
        assert after == files[0]  # the download is the slider's result file
        paths += [before, after, view]
    assert len(set(paths)) == 6 and len({str(Path(p).parent) for p in paths}) == 2
    for a, b in zip(paths[:3], paths[3:]):
        np.testing.assert_array_equal(_pixels(a), _pixels(b))  # same request, same pixels
    np.testing.assert_array_equal(_pixels(first[0][0]), np.asarray(_photo()))


def test_identical_concurrent_requests_all_succeed(app_url, tmp_path):  # noqa: F811
    """8 visitors send the same /render request at once: every one gets complete images."""
    from gradio_client import Client, handle_file

    source = EXAMPLES / "coffee.jpg"
    size = Image.open(source).size
    barrier = threading.Barrier(8)

    def visitor(i: int):
        client = Client(app_url, verbose=False, download_files=str(tmp_path / f"user{i}"))
        barrier.wait()
        return client.predict(handle_file(str(source)), focus_x=280, focus_y=140, k=16, backend="classical",
                              api_name="/render")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(visitor, range(8)))
    reference = None
    for (before, after), view, info in results:
        for path in (before, after, view):
            with Image.open(path) as im:
                im.load()  # a truncated file fails here
                assert im.size == size
        pixels = _pixels(after)
        reference = pixels if reference is None else reference
        np.testing.assert_array_equal(pixels, reference)
        assert info["request_seconds"] > 0


# ---------------------------------------------------------------------------------------------
# Uploads: unreadable files, and what a new photo clears
# ---------------------------------------------------------------------------------------------


def test_unreadable_upload_gets_our_message_and_the_photo_box_is_emptied(tmp_path):
    corrupt = tmp_path / "holiday.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    out = app.handlers.on_upload(str(corrupt))
    image, state, fx, fy, status = out[:5]
    assert image is None and state is None and (fx, fy) == (None, None)
    assert "Cannot read this photo" in status and "holiday.jpg" in status
    # Through Gradio's own call path (the upload event): the photo component passes the path on
    # without opening it, and the handler's answer reaches the page; no exception on the server.
    from gradio.data_classes import ImageData

    (upload,) = _event("on_upload")
    assert upload.inputs[0].preprocess(ImageData(path=str(corrupt), orig_name="holiday.jpg")) == str(corrupt)
    assert upload.inputs[0].get_block_name() == "image"
    assert not (Path(ui_handlers.__file__).parent / "panels.pyi").exists()  # no stub written by Gradio
    prediction = asyncio.run(app.demo.call_function(upload, [str(corrupt)]))["prediction"]
    assert "Cannot read this photo" in prediction[4]
    # A render or a click on such a file says the same, as a gr.Error.
    with pytest.raises(gr.Error, match="holiday.jpg"):
        app.handlers.render(AppSettings(image=str(corrupt)))
    with pytest.raises(gr.Error, match="holiday.jpg"):
        ui_handlers.on_select(str(corrupt), None, gr.SelectData(None, {"index": [1, 1], "value": None}))


def test_a_new_photo_clears_the_previous_results():
    (upload,) = _event("on_upload")
    ids = [getattr(c, "elem_id", None) for c in upload.outputs]
    for elem_id in ("result-slider", "compare-gallery", "disparity-view", "download", "status", "sweep-gif",
                    "sweep-strip", "sweep-files", "sweep-status"):
        assert elem_id in ids, elem_id
    path = EXAMPLES / "chelsea.jpg"
    out = app.handlers.on_upload(str(path))
    by_id = dict(zip(ids, out))
    assert by_id["result-slider"] is None and by_id["disparity-view"] is None and by_id["download"] is None
    assert by_id["sweep-gif"] is None and by_id["sweep-files"] is None and by_id["sweep-status"] == ""
    assert by_id["compare-gallery"]["visible"] is False
    assert "Photo loaded" in by_id["status"] and "451×300" in by_id["status"]
    (clear,) = _event("on_clear")
    assert len(app.handlers.on_clear()) == len(clear.outputs)


def test_a_failed_render_replaces_the_status_with_its_reason():
    """The render event's failure handler shows the session's error, not the previous status."""
    (render,) = _event("render_settings", "click")
    failures = [f for f in app.demo.fns.values() if getattr(f, "trigger_only_on_failure", False)]
    assert len(failures) >= 7  # select, auto focus, Render, K release, Enter in x and y, sweep
    status_ids = {getattr(c, "elem_id", None) for f in failures for c in f.outputs}
    assert status_ids == {"status", "sweep-status"}

    request = type("Request", (), {"session_hash": "session-a"})()
    values = {c: getattr(c, "value", None) for c in render.inputs}
    values.update({c: _photo() for c in render.inputs if getattr(c, "elem_id", None) == "input-image"})
    values.update({c: 40 for c in render.inputs if getattr(c, "elem_id", None) == "k-slider"})
    with pytest.raises(gr.Error):
        render.fn(values, request)
    form_failed = next(f.fn for f in failures if f.outputs[0].elem_id == "status")
    status = form_failed(request)
    assert "Not rendered" in status and "K=40 is outside [0, 32]" in status
    assert "Not rendered" in form_failed(type("Request", (), {"session_hash": "other"})())  # generic


# ---------------------------------------------------------------------------------------------
# Timings
# ---------------------------------------------------------------------------------------------


def test_reported_time_covers_the_whole_request(monkeypatch):
    """Writing the files (slowed down here) counts in the reported time, as the user waits for it."""
    real = outputs.write_png

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs, "write_png", slow)
    t0 = time.perf_counter()
    *_, status, _, info = app.handlers.render(AppSettings(image=_photo(seed=3), focus_x=5, focus_y=5, k=8))
    wall = time.perf_counter() - t0
    reported = info["request_seconds"]
    assert info["timings_s"]["total"] + 0.6 <= reported <= wall  # three files of 0.2 s each
    shown = re.search(r"\*\*Time:\*\* ([\d.]+) (s|ms) for this request", status)
    assert shown and float(shown.group(1)) * (1 if shown.group(2) == "s" else 1e-3) >= round(reported, 1) - 0.05


def test_sweep_status_reports_the_time_including_the_files(monkeypatch):
    real = outputs.sweep_files

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs, "sweep_files", slow)
    *_, status = app.handlers.sweep(AppSettings(image=_photo(), k=8, sweep_frames=2, depth_model="approximate"))
    took = re.search(r"· ([\d.]+) (s|ms) for this request \(rendering ([\d.]+) (s|ms)", status)
    assert took, status
    total = float(took.group(1)) * (1 if took.group(2) == "s" else 1e-3)
    rendering = float(took.group(3)) * (1 if took.group(4) == "s" else 1e-3)
    assert total >= rendering + 0.45


# ---------------------------------------------------------------------------------------------
# Enter in focus x / y
# ---------------------------------------------------------------------------------------------


def test_enter_in_focus_x_or_y_moves_the_marker_and_renders():
    submits = _event("on_typed_focus", "submit")
    triggers = {app.demo.blocks[t[0]].elem_id for f in submits for t in f.targets}
    assert triggers == {"focus-x", "focus-y"}
    then_render = [f for f in _event("render_settings", "then")]
    submit_ids = {f._id for f in submits}
    assert {f.trigger_after for f in then_render} >= submit_ids  # each Enter is followed by a render

    photo = _photo(64, 48)
    marked, state = ui_handlers.on_typed_focus(photo, None, 30, 20)
    changed = np.any(_pixels(marked) != np.asarray(photo), axis=2)
    assert changed[20, 30] and not changed[:, 50:].any()
    assert state["original"].size == (64, 48)
    # Outside the photo: nothing moves (the render that follows says what is wrong).
    assert ui_handlers.on_typed_focus(photo, None, 500, 20) == (gr.skip(), gr.skip())


# ---------------------------------------------------------------------------------------------
# Processing size messages
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, message, not_message", [
    ("100000", r"100000 px is out of range: the long side must be in \[64, 8192\]", "whole number"),
    ("32", r"32 px is out of range", "whole number"),
    ("1600.5", "not a whole number of pixels", "out of range"),
    ("big", "must be a whole number of pixels", "out of range"),
])
def test_processing_size_messages_say_what_is_wrong(value, message, not_message):
    with pytest.raises(MagicBokehError, match=message) as info:
        processing.check_max_side(value)
    assert not_message not in str(info.value)
    assert processing.check_max_side("8192") == 8192 and processing.check_max_side("64") == 64


# ---------------------------------------------------------------------------------------------
# Sweep files
# ---------------------------------------------------------------------------------------------


def _frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Photo-like frames (smooth colour fields, shifting) of a large photo."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(n):
        r = 0.5 + 0.5 * np.sin(xs / 97.0 + i / 3)
        g = 0.5 + 0.5 * np.cos(ys / 61.0 - i / 5)
        b = 0.5 + 0.5 * np.sin((xs + ys) / 173.0)
        frames.append((np.stack([r, g, b], axis=2) * 255).astype(np.uint8))
    return frames


@pytest.mark.parametrize("mp4", [True, False], ids=["mp4", "webp-fallback"])
def test_sweep_preview_is_light_and_the_download_is_a_valid_animation(tmp_path, monkeypatch, mp4):
    if mp4 and not outputs.mp4_available():
        pytest.skip("imageio-ffmpeg is not installed")
    monkeypatch.setattr(outputs, "mp4_available", lambda: mp4)
    frames = _frames(24, 1600, 1000)  # 1.6 MP: 24 full-size PNG frames would be tens of MB
    preview, sheet, download = outputs.sweep_files(frames, tmp_path, "sweep")
    with Image.open(preview) as im:
        assert im.format == "WEBP" and im.n_frames == 24
        assert max(im.size) == outputs.PREVIEW_MAX_SIDE and im.size == (480, 300)
    with Image.open(sheet) as im:
        assert max(im.size) <= 6 * outputs.THUMB_MAX_SIDE and im.format == "PNG"
    assert Path(preview).stat().st_size + Path(sheet).stat().st_size < 3_000_000
    if mp4:
        import imageio.v2 as imageio

        assert Path(download).suffix == ".mp4"
        reader = imageio.get_reader(download, format="FFMPEG")
        decoded = [frame for frame in reader]
        reader.close()
        assert len(decoded) == 24 and decoded[0].shape == (1000, 1600, 3)
        assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 6
    else:
        with Image.open(download) as im:
            assert im.format == "WEBP" and im.n_frames == 24 and im.size == (1600, 1000)
            im.seek(5)
            assert np.abs(np.asarray(im.convert("RGB")).astype(int) - frames[5].astype(int)).mean() < 6
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".")]  # no temporaries left


# ---------------------------------------------------------------------------------------------
# Simulated low-quality capture with the classical backend only
# ---------------------------------------------------------------------------------------------


def test_classical_only_simulation_says_nothing_was_restored():
    *_, status, _, info = app.handlers.render(AppSettings(image=_photo(), focus_x=5, focus_y=5, k=8,
                                                          simulate_lq=True, backends=["classical"]))
    line = next(line for line in status.splitlines() if "only blurs" in line)
    assert line.startswith("⚠") and "not restored" in line
    *_, status, _, _ = app.handlers.render(AppSettings(image=_photo(), focus_x=5, focus_y=5, k=8))
    assert "only blurs" not in status
