"""The app's aperture sweep by multiples of K (supplement Fig. 3, "from 1x blur to 3x blur") and the
two-stage backend's "re-estimate depth on the restored photo" control, called through the events
the browser triggers (the Form reads the components into AppSettings)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest_app import app
from magicbokeh import zerogpu

pytestmark = pytest.mark.filterwarnings("ignore:Examples will be cached but not all")

W, H = 96, 64


def _photo() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray((rng.uniform(0.1, 0.9, (H, W, 3)) * 255).astype(np.uint8))


def _map(tmp_path: Path) -> str:
    """Disparity: a near left half (1) and a far right half (0.2; the core normalises it to 0)."""
    disp = np.full((H, W), 0.2, np.float32)
    disp[:, : W // 2] = 1.0
    np.save(tmp_path / "disp.npy", disp)
    return str(tmp_path / "disp.npy")


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _event(name: str):
    (event,) = [f for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == name
                and any(t[1] == "click" for t in f.targets)]
    return event


def _call(event, **by_id):
    """Run an event with its components' defaults, some replaced by elem_id."""
    values = {c: getattr(c, "value", None) for c in event.inputs}
    ids = {getattr(c, "elem_id", None): c for c in event.inputs}
    for elem_id, value in by_id.items():
        assert elem_id in ids, f"{elem_id} is not an input of {event.fn.__name__}"
        values[ids[elem_id]] = value
    return event.fn(values)


def _sweep(tmp_path, multiples, k=8.0, **extra):
    return _call(_event("sweep_settings"), **{
        "input-image": _photo(), "k-slider": k, "disparity-file": _map(tmp_path), "sweep-k-multiples": multiples,
        "sweep-frames": 5, "sweep-k-max": 3, **extra})


def test_sweep_by_multiples_renders_each_frame_as_a_render_at_that_k(tmp_path):
    """Frames/K max (5, 3) are not used; frame i is exactly the Render button's image at K = 8 x m_i."""
    gif, strip, files, status = _sweep(tmp_path, "1, 2x 3")
    sheet = _pixels(strip)
    assert sheet.shape == (H, 3 * W, 3)  # three frames, not the slider's five
    render = _event("render_settings")
    for i, m in enumerate((1, 2, 3)):
        pair = _call(render, **{"input-image": _photo(), "k-slider": 8.0 * m, "disparity-file": _map(tmp_path)})[0]
        np.testing.assert_array_equal(sheet[:, i * W : (i + 1) * W], _pixels(pair[1]))
    # The far half blurs more from frame to frame (K 8 -> 16 -> 24); the frames are not K 0..3.
    far = [float(np.var(np.diff(sheet[4:-4, i * W + W // 2 + 4 : (i + 1) * W - 4].astype(float), axis=1)))
           for i in range(3)]
    assert far[0] > far[1] > far[2]
    assert "3 frames, 1×, 2×, 3× the base K 8 = K 8, 16, 24" in status


@pytest.mark.parametrize(
    "text, k, message",
    [("1,a,3", 8.0, "K multiples must be numbers separated by commas"),
     ("2", 8.0, "needs 2 to 120 multiples"),
     ("1,-1", 8.0, "finite numbers >= 0"),
     ("1,2,3", 16.0, "K 16 x 3 = 48 is above the largest K 32; use a base K of at most 10.67"),
     ("1,2", 0.0, "needs a base K above 0")],
)
def test_bad_multiples_are_refused_with_the_core_message(tmp_path, text, k, message):
    with pytest.raises(gr.Error, match=message):
        _sweep(tmp_path, text, k=k)


def test_multiples_do_not_apply_to_a_focus_sweep(tmp_path):
    """The field is for aperture sweeps; a focus sweep keeps its frame count and one K."""
    *_, status = _sweep(tmp_path, "1,2,3", **{"sweep-kind": "focus", "sweep-frames": 4})
    assert "4 frames, focal-plane disparity 1.00 → 0.00 at K = 8" in status


# ---------------------------------------------------------------------------------------------
# Two-stage: re-estimate depth on the restored photo
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch):
    """The render requests the Render button would send (rendering nothing)."""
    requests = []

    def fake(request, progress=None):
        requests.append(request)
        raise RuntimeError("captured")

    monkeypatch.setattr(zerogpu, "render_request", fake)
    return requests


@pytest.mark.parametrize(
    "backends, ticked, depth_model, expected",
    [(["two-stage"], True, "auto", app.handlers.sources.depth_model or "auto"),
     (["two-stage"], True, "small", "small"),  # the depth menu's model, when it names one
     (["two-stage"], False, "auto", None),
     (["classical"], True, "auto", None)],  # the option belongs to the two-stage backend only
)
def test_restored_depth_checkbox_reaches_the_two_stage_backend(captured, backends, ticked, depth_model,
                                                               expected):
    with pytest.raises(RuntimeError, match="captured"):
        _call(_event("render_settings"), **{"input-image": _photo(), "backends": backends, "restored-depth": ticked,
                                            "depth-model": depth_model})
    (request,) = captured
    assert request.settings.backend == backends[0]
    assert request.settings.backend_options.get("restored_depth") == expected


def test_restored_depth_checkbox_shows_only_with_the_two_stage_backend():
    from magicbokeh.ui import panels

    (change,) = [f for f in app.demo.fns.values() if f.fn is panels.on_backends_change]
    assert [c.elem_id for c in change.inputs] == ["backends"] and [c.elem_id for c in change.outputs] == [
        "restored-depth"]
    assert panels.on_backends_change(["classical", "two-stage"])["visible"] is True
    assert panels.on_backends_change(["classical"])["visible"] is False
    assert panels.on_backends_change(None)["visible"] is False
