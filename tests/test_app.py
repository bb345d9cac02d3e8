"""The Gradio app: handlers called directly, then the launched app through gradio_client."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest_app import EXAMPLES, app, app_url  # noqa: F401  (app_url is a fixture)
from magicbokeh import backends as backends_mod
from magicbokeh import depth as depth_mod
from magicbokeh.app_settings import AppSettings, ModelSources
from magicbokeh.backends import Availability, Backend, BackendResult
from magicbokeh.ui import handlers as ui_handlers
from magicbokeh.ui import views

pytestmark = pytest.mark.filterwarnings("ignore:Examples will be cached but not all")

DEFAULTS = dict(disparity_map=None, disparity_is_depth=False, focal_range=0.0, aperture="circle",
                blades=6, rotation_deg=0.0, highlight_boost=False)


def _pixels(path) -> np.ndarray:
    """A returned image file's RGB pixels (every image output is a file of the response's own)."""
    assert isinstance(path, str) and Path(path).is_file(), path
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _ui(image, state, x, y, k=16.0, backends=("classical",), **overrides):
    """Call the Render button's handler with the UI defaults; images read back from their files."""
    (before, after), gallery, view, status, files, info = app.handlers.render(AppSettings(
        image=image, state=state, focus_x=x, focus_y=y, k=k, backends=list(backends), **{**DEFAULTS, **overrides}))
    return (_pixels(before), _pixels(after)), gallery, _pixels(view), status, files, info


def _click(image, state, x, y):
    """A click: the marked copy (read back from its file), the state and the focus readout."""
    marked, state, fx, fy = ui_handlers.on_select(image, state, gr.SelectData(None, {"index": [x, y], "value": None}))
    return _pixels(marked), state, fx, fy


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    smooth = rng.random((height // 8 + 1, width // 8 + 1, 3))
    arr = np.kron(smooth, np.ones((8, 8, 1)))[:height, :width]
    return Image.fromarray((arr * 255).astype(np.uint8))


def _ramp_map(path: Path, width: int, height: int) -> np.ndarray:
    """A disparity map whose value identifies the pixel: 0.6 * x / (w-1) + 0.4 * y / (h-1)."""
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    disparity = 0.6 * xs + 0.4 * ys
    np.save(path, disparity)
    return disparity


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


def test_click_sets_focus_in_original_pixels_and_renders_the_original(tmp_path):
    photo = _photo(160, 96)
    _, state, fx, fy, *_ = app.handlers.on_upload(photo)
    assert (fx, fy) == (None, None)

    marked, state, fx, fy = _click(photo, state, 37, 61)
    assert (fx, fy) == (37, 61)
    original = np.asarray(photo)
    assert marked.shape == original.shape  # the marker is drawn at full resolution
    changed = np.any(marked != original, axis=2)
    assert changed[61, 37] and changed[61 - 8 : 61 + 9, 37 - 8 : 37 + 9].sum() > 20
    assert not changed[:, 100:].any()  # the marker stays near the click

    # The browser sends back the marked copy; the render must use the clean original.
    shown = Image.fromarray(marked)
    disparity = _ramp_map(tmp_path / "ramp.npy", 160, 96)
    pair, gallery, depth_view, status, files, info = _ui(shown, state, fx, fy, k=12,
                                                           disparity_map=str(tmp_path / "ramp.npy"))
    before, after = pair
    np.testing.assert_array_equal(before, original)
    assert after.shape == original.shape
    assert info["focus_point"] == [37, 61]
    assert info["focus_disparity"] == pytest.approx(float(disparity[61, 37]), abs=2e-3)
    assert depth_view.shape == original.shape
    assert "pixel (37, 61)" in status and "supplied disparity map" in status
    assert len(files) == 1 and Image.open(files[0]).size == (160, 96)

    # A second click on the marked copy still maps to the original (one marker, not two).
    marked2, state2, _, _ = _click(shown, state, 120, 20)
    again = np.any(marked2 != original, axis=2)
    assert again[20, 120] and not again[61, 37]


def test_click_on_exif_rotated_photo_uses_upright_pixels(tmp_path):
    upright = _photo(80, 120, seed=3)  # portrait as displayed
    raw = upright.transpose(Image.Transpose.ROTATE_90)  # stored landscape, 120 x 80
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    raw.save(path, quality=95, exif=exif)

    # What Gradio hands the handlers (type="pil"), and a raw PIL with the tag, must agree.
    from gradio.data_classes import ImageData

    via_gradio = gr.Image(type="pil").preprocess(ImageData(path=str(path), orig_name="rotated.jpg"))
    via_pil = Image.open(path)
    assert via_pil.size == (120, 80)
    assert via_gradio.size == (80, 120)

    disparity = _ramp_map(tmp_path / "ramp.npy", 80, 120)
    for image in (via_gradio, via_pil):
        _, state, *_ = app.handlers.on_upload(image)
        assert state["original"].size == (80, 120)
        marked, state, fx, fy = _click(image, state, 20, 100)  # y = 100 only exists upright
        assert marked.shape == (120, 80, 3)
        assert (fx, fy) == (20, 100)
        pair, *_, info = _ui(Image.fromarray(marked), state, fx, fy,
                             disparity_map=str(tmp_path / "ramp.npy"))
        assert pair[1].shape == (120, 80, 3)
        assert info["focus_point"] == [20, 100]
        assert info["focus_disparity"] == pytest.approx(float(disparity[100, 20]), abs=2e-3)


def test_auto_focus_without_a_click_is_stated():
    pair, _, _, status, _, info = _ui(_photo(96, 64), None, None, None, k=8)
    assert info["focus_point"] is None
    assert "automatic" in status
    assert pair[1].shape == (64, 96, 3)


def test_changing_k_reuses_the_cached_depth(monkeypatch):
    depth_mod.DEPTH_CACHE.clear()
    computed = []
    real_approx = depth_mod.approximate_disparity

    def counting_approx(*args, **kwargs):
        computed.append("approximate")
        return real_approx(*args, **kwargs)

    def counting_model(self, rgb):
        computed.append("model")
        raise AssertionError("the depth model must not run offline in this test")

    monkeypatch.setattr(depth_mod, "approximate_disparity", counting_approx)
    monkeypatch.setattr(depth_mod.DepthAnythingEstimator, "__call__", counting_model)
    photo = _photo(128, 96, seed=5)
    _, state, *_ = app.handlers.on_upload(photo)
    marked, state, fx, fy = _click(photo, state, 64, 40)

    first = _ui(Image.fromarray(marked), state, fx, fy, k=4)
    hits = depth_mod.DEPTH_CACHE.hits
    assert computed == ["approximate"]
    second = _ui(Image.fromarray(marked), state, fx, fy, k=28)
    assert depth_mod.DEPTH_CACHE.hits > hits
    assert computed == ["approximate"]  # no recompute
    assert second[5]["K"] == 28 and first[5]["K"] == 4
    assert not np.array_equal(first[0][1], second[0][1])  # K really changed the result


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda tmp: _ui(None, None, None, None), "Upload a photo"),
        (lambda tmp: app.render(None), "no image"),
        (lambda tmp: _ui(_photo(64, 48), None, 5, 5, k=40), r"K=40 is outside \[0, 32\]"),
        (lambda tmp: app.render(_photo(64, 48), 5, 5, k=-1), r"K=-1 is outside \[0, 32\]"),
        (lambda tmp: _ui(_photo(64, 48), None, 500, 5), "outside the 64x48 image"),
        (lambda tmp: _ui(_photo(64, 48), None, 5, None), "set both focus x and focus y"),
        (lambda tmp: _ui(_photo(64, 48), None, 5, 5, backends=()), "at least one backend"),
        (lambda tmp: _ui(_photo(64, 48), None, 5, 5, disparity_map=_nan_map(tmp)), "NaN"),
        (lambda tmp: app.render(_photo(64, 48), disparity_map=_nan_map(tmp)), "NaN"),
        (lambda tmp: _ui(_photo(64, 48), None, 5, 5, disparity_map=_not_an_image(tmp)),
         "not a readable image"),
        (lambda tmp: app.render(Image.new("RGB", (8, 8))), "at least 16 px"),
    ],
    ids=["no-image", "api-no-image", "k-too-big", "api-k-negative", "focus-outside", "half-focus",
         "no-backend", "nan-map", "api-nan-map", "corrupt-map", "tiny-image"],
)
def test_bad_input_becomes_gr_error_with_the_core_message(tmp_path, call, message):
    with pytest.raises(gr.Error, match=message):
        call(tmp_path)


def _nan_map(tmp: Path) -> str:
    arr = np.full((48, 64), 0.5, np.float32)
    arr[10, 10] = np.nan
    np.save(tmp / "nan.npy", arr)
    return str(tmp / "nan.npy")


def _not_an_image(tmp: Path) -> str:
    (tmp / "broken.png").write_bytes(b"not a png at all")
    return str(tmp / "broken.png")


class _InvertBackend(Backend):
    """A stand-in second backend (inverts the photo) to exercise the comparison view."""

    name = "test-invert"
    label = "Test: invert"

    def availability(self, options=None) -> Availability:
        return Availability(True, "test only")

    def render(self, image, disparity, focus_disparity, k, *, options, image_key, progress=None):
        return BackendResult(1.0 - image, ["inverted for the test"])


def test_comparing_backends_fills_the_gallery(monkeypatch):
    monkeypatch.setitem(backends_mod._REGISTRY, "test-invert", _InvertBackend)
    monkeypatch.setitem(backends_mod._INSTANCES, "test-invert", _InvertBackend())
    photo = _photo(64, 48)
    pair, gallery, _, status, files, info = _ui(photo, None, 10, 10, k=8,
                                                backends=("classical", "test-invert"))
    assert gallery["visible"] is True
    labels = [label for _, label in gallery["value"]]
    assert labels == ["input", "classical", "test-invert"]
    inverted = _pixels(next(img for img, label in gallery["value"] if label == "test-invert"))
    np.testing.assert_allclose(inverted.astype(int), 255 - np.asarray(photo).astype(int), atol=1)
    assert set(info["backends"]) == {"classical", "test-invert"}
    assert len(files) == 2 and "test-invert" in status
    # A single backend hides the gallery again.
    assert _ui(photo, None, 10, 10)[1]["visible"] is False


def test_clear_focus_restores_the_original():
    photo = _photo(64, 48)
    _, state, *_ = app.handlers.on_upload(photo)
    marked, state, *_ = _click(photo, state, 30, 20)
    shown, state, fx, fy = ui_handlers.clear_focus(Image.fromarray(marked), state)
    np.testing.assert_array_equal(_pixels(shown), np.asarray(photo))
    assert (fx, fy) == (None, None)


def test_examples_have_licences_and_the_synthetic_one_has_true_depth():
    rows, labels = app.example_rows()
    assert len(rows) >= 4 and len(labels) == len(rows)
    licences = (EXAMPLES / "LICENSES.md").read_text()
    for path, x, y, k, _disparity, _boost in rows:
        with Image.open(path) as im:
            assert max(im.size) <= 1024
            assert 0 <= x < im.size[0] and 0 <= y < im.size[1]
        assert 0 <= k <= 32
        assert Path(path).name in licences
    with_depth = [row for row in rows if row[4]]
    assert with_depth, "at least one example must carry a true disparity map"

    # True depth: the lights on the back wall blur into dim discs when the focus is on the near
    # sphere, and stay sharp points when the focus is on the far sphere.
    assert len(with_depth) >= 2
    peaks = []
    for path, x, y, k, disparity, boost in with_depth[:2]:
        pair, _, _, status, _, info = app.handlers.render_example(path, x, y, k, disparity, boost)
        pair = [_pixels(p) for p in pair]
        assert info["approximate_depth"] is False and "supplied disparity map" in info["depth_source"]
        assert info["focus_point"] == [x, y]
        before, after = (p.astype(np.float32).mean(axis=2) for p in pair)
        # Sharp at the focus point.
        window = (slice(y - 3, y + 4), slice(x - 3, x + 4))
        assert np.abs(after[window] - before[window]).mean() < 2.0
        wall = np.asarray(Image.open(disparity), np.float32) / 65535.0 < 0.02
        peaks.append((np.percentile(before[wall], 99.9), np.percentile(after[wall], 99.9)))
    (near_before, near_after), (far_before, far_after) = peaks
    assert near_after < 0.75 * near_before
    assert far_after > 0.95 * far_before


# ---------------------------------------------------------------------------------------------
# The launched app through gradio_client
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):  # noqa: F811 (fixture imported from conftest_app)
    from gradio_client import Client

    return Client(app_url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def test_api_lists_only_the_render_endpoint(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert list(api["named_endpoints"]) == ["/render"]
    params = [p["parameter_name"] for p in api["named_endpoints"]["/render"]["parameters"]]
    # The original parameters keep their order; new ones are optional and only ever appended.
    assert params == ["image", "focus_x", "focus_y", "k", "backend", "disparity_map",
                      "disparity_is_depth", "focal_range", "aperture", "blades", "rotation_deg",
                      "highlight_boost", "focus_parity", "depth_model", "simulate_lq", "lq_preset",
                      "lq_seed", "max_side", "match_input_size", "subject", "points"]
    defaults = {p["parameter_name"]: p.get("parameter_default")
                for p in api["named_endpoints"]["/render"]["parameters"][13:]}
    assert defaults == {"depth_model": "auto", "simulate_lq": False, "lq_preset": "realesrgan", "lq_seed": 0,
                        "max_side": "auto", "match_input_size": True, "subject": False, "points": None}


def test_api_render_returns_full_size_images_and_survives_bad_calls(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    source = EXAMPLES / "coffee.jpg"
    size = Image.open(source).size

    def call(**kwargs):
        args = dict(focus_x=280, focus_y=140, k=24, backend="classical", api_name="/render")
        args.update(kwargs)
        return client.predict(handle_file(str(source)), **args)

    (before, after), depth_view, info = call()
    assert Image.open(before).size == size and Image.open(after).size == size
    assert Image.open(after).format == "PNG"
    assert Image.open(depth_view).size == size
    assert info["focus_point"] == [280, 140] and info["output_size"] == list(size)
    assert not np.array_equal(np.asarray(Image.open(before)), np.asarray(Image.open(after)))

    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((4, 4), np.nan, np.float32))
    with pytest.raises(AppError, match="NaN"):
        call(disparity_map=handle_file(str(nan)))
    with pytest.raises(AppError, match="outside the 600x400 image"):
        call(focus_x=5000)
    # A file that is not an image reaches our decoder, not Gradio's generic error.
    corrupt = tmp_path / "holiday.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    with pytest.raises(AppError, match=r"cannot read image 'holiday\.png'"):
        client.predict(handle_file(str(corrupt)), focus_x=1, focus_y=1, k=8, backend="classical",
                       api_name="/render")
    # Processing size: a smaller processing size still returns the input's size, K scaled with it.
    (_, small), _, info = call(max_side="256")
    assert Image.open(small).size == size
    with pytest.raises(AppError, match="8192"):
        call(max_side="99999")

    # Still serving, and automatic focus works through the API too.
    (before, after), _, info = call(focus_x=None, focus_y=None, k=0)
    assert Image.open(after).size == size and info["focus_point"] is None


def test_api_new_optional_parameters_work_by_name(client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    source = EXAMPLES / "coffee.jpg"
    clean = np.asarray(Image.open(source).convert("RGB"))
    (before, after), _, info = client.predict(
        handle_file(str(source)), 280, 140, 8, "classical", depth_model="approximate", simulate_lq=True,
        lq_preset="zoom", lq_seed=3, api_name="/render")
    degraded = np.asarray(Image.open(before).convert("RGB"))
    assert degraded.shape == clean.shape == np.asarray(Image.open(after).convert("RGB")).shape
    assert np.abs(degraded.astype(int) - clean.astype(int)).mean() > 2  # the "before" is the degraded photo
    assert info["approximate_depth"] is True
    assert any("simulated low-quality capture: zoom x4, seed 3" in m for m in info["messages"])
    with pytest.raises(AppError, match="no-such-model"):
        client.predict(handle_file(str(source)), depth_model="no-such-model", api_name="/render")


# ---------------------------------------------------------------------------------------------
# Start-up and configuration
# ---------------------------------------------------------------------------------------------


def test_app_imports_offline_in_seconds_without_loading_models():
    import os
    import subprocess
    import sys
    import time

    code = ("import sys, app; heavy = [m for m in ('diffusers', 'transformers') if m in sys.modules]; "
            "print(heavy); print(len(app.example_rows()[0]))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=EXAMPLES.parent, env=env, capture_output=True,
                         text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    heavy, n_examples = out.stdout.strip().splitlines()[-2:]
    assert heavy == "[]"  # no model library is imported just to show the page
    assert int(n_examples) >= 4
    assert elapsed < 30


def test_model_sources_reach_the_diffusion_backends(monkeypatch):
    import os

    for env in app.SOURCE_ENV.values():
        monkeypatch.setenv(env, "")  # empty = unset; monkeypatch restores the originals afterwards
    monkeypatch.setenv("MAGICBOKEH_CHECKPOINT", "/weights/lora.pkl")
    before = dict(os.environ)
    sources = ModelSources.from_env(base="/weights/sd21")  # a flag overrides / adds to the environment
    assert dict(os.environ) == before  # read, never written
    assert sources.base == "/weights/sd21" and sources.device is None
    assert sources.backend_options("classical") == {}
    assert sources.backend_options("magicbokeh") == {"base": "/weights/sd21", "checkpoint": "/weights/lora.pkl"}
    assert sources.backend_options("two-stage")["base"] == "/weights/sd21"
    # The request of a render carries them (no process-wide configuration).
    request = AppSettings(k=8).request(np.zeros((16, 16, 3), np.float32), "magicbokeh",
                                       ModelSources.from_env(depth_model="large", device="cpu"))
    assert request.depth_model == "large" and request.depth_device == "cpu"
    assert request.settings.backend_options == {"device": "cpu", "checkpoint": "/weights/lora.pkl"}
    args = app.parse_args(["--port", "7999", "--backend", "classical,magicbokeh", "--no-mcp"])
    assert (args.port, args.backend, args.mcp) == (7999, "classical,magicbokeh", False)


def test_startup_status_and_backend_notes_explain_what_is_missing(monkeypatch):
    table = {
        "classical": (Availability(True, "CPU, no weights needed"), "Classical lens blur (no weights)"),
        "magicbokeh": (Availability(False, "weights not in the Hugging Face cache"), "MagicBokeh"),
    }
    status = views.startup_status(
        (False, "Depth Anything V2 not available: no network. Using approximate depth."), table)
    assert "click on it" in status
    assert "⚠ Depth Anything V2 not available: no network. Using approximate depth." in status
    assert "Not available here: magicbokeh" in status and "classical" not in status.split("here:")[1]
    notes = views.backend_notes(table)
    assert "✗ **magicbokeh**" in notes and "weights not in the Hugging Face cache" in notes
    assert "✓ **classical**" in notes


def test_official_focus_rule_reads_the_single_8bit_pixel(tmp_path):
    """The Advanced 'Official focus rule' switch: exact 8-bit pixel vs the 7x7 median."""
    disp = np.full((48, 64), 0.4, np.float32)
    disp[0, 0], disp[47, 63] = 0.0, 1.0  # keeps min-max normalisation an identity
    disp[20, 30] = 0.9  # one odd pixel under the click
    np.save(tmp_path / "disp.npy", disp)
    image = _photo(64, 48)
    robust = app.render(image, 30, 20, k=8, disparity_map=str(tmp_path / "disp.npy"))[2]
    parity = app.render(image, 30, 20, k=8, disparity_map=str(tmp_path / "disp.npy"), focus_parity=True)[2]
    assert robust["focus_disparity"] == pytest.approx(0.4, abs=1e-6)
    assert parity["focus_disparity"] == pytest.approx(int(0.9 * 255) / 255, abs=1e-6)



def _event(name: str):
    return next(f for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == name)


def test_render_and_sweep_events_receive_one_dict_of_every_control():
    """The Render button and the sweep run through Gradio's own call path with a set of inputs:
    the handler gets one {component: value} dict, read into AppSettings (no control left out)."""
    import asyncio
    from dataclasses import fields

    sweep_fields = {"sweep_kind", "sweep_frames", "sweep_k_max", "sweep_k_multiples"}
    everything = {f.name for f in fields(AppSettings)}
    render_fn, sweep_fn = _event("render_settings"), _event("sweep_settings")
    assert render_fn.inputs_as_dict and sweep_fn.inputs_as_dict
    assert len(render_fn.inputs) == len(everything - sweep_fields)
    assert len(sweep_fn.inputs) == len(everything - {"max_side", "match_input_size"})

    photo = _photo(64, 48)
    by_id = {"input-image": photo, "focus-x": 10, "focus-y": 12, "k-slider": 8.0}
    values = [by_id.get(c.elem_id, getattr(c, "value", None)) for c in render_fn.inputs]
    out = asyncio.run(app.demo.call_function(render_fn, values))["prediction"]
    info = out[5]
    assert info["focus_point"] == [10, 12] and info["K"] == 8.0 and info["backend"] == "classical"
    expected = app.handlers.render(AppSettings(image=photo, focus_x=10, focus_y=12, k=8.0))
    np.testing.assert_array_equal(_pixels(out[0][1]), _pixels(expected[0][1]))

    values = [by_id.get(c.elem_id, getattr(c, "value", None)) for c in sweep_fn.inputs]
    values = [3 if c.elem_id == "sweep-frames" else v for c, v in zip(sweep_fn.inputs, values)]
    gif, strip, files, status = asyncio.run(app.demo.call_function(sweep_fn, values))["prediction"]
    assert "3 frames" in status and Image.open(strip).size == (3 * 64, 48)
