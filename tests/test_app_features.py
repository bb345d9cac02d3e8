"""App features called through their handlers: the depth-model selector, the low-quality
simulation and the sweep (GIF + PNG strip)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest_app import app
from magicbokeh import app_support, pipeline
from magicbokeh.app_settings import AppSettings
from magicbokeh import depth as depth_mod
from magicbokeh.depth import DEPTH_MODELS
from magicbokeh.ui import views

pytestmark = pytest.mark.filterwarnings("ignore:Examples will be cached but not all")

W, H = 96, 64


def _photo(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.uniform(0.1, 0.9, (H, W, 3)) * 255).astype(np.uint8))


def _map(tmp_path: Path) -> str:
    """Disparity: top half near (1), bottom half far (0)."""
    disp = np.zeros((H, W), np.float32)
    disp[: H // 2] = 1.0
    np.save(tmp_path / "disp.npy", disp)
    return str(tmp_path / "disp.npy")


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _ui(image, *, x=10, y=10, k=16.0, disparity_map=None, depth_model="auto", simulate_lq=False,
        lq_preset="realesrgan", lq_seed=0, backends=("classical",)):
    """The Render handler; the before/after files read back as pixels."""
    pair, *rest = app.handlers.render(AppSettings(
        image=image, focus_x=x, focus_y=y, k=k, backends=list(backends), disparity_map=disparity_map,
        depth_model=depth_model, simulate_lq=simulate_lq, lq_preset=lq_preset, lq_seed=lq_seed))
    return (_pixels(pair[0]), _pixels(pair[1])), *rest


def _sweep(image, *, kind="aperture", frames=4, k_max=24, k=16.0, disparity_map=None,
           depth_model="auto", x=10, y=10, simulate_lq=False):
    return app.handlers.sweep(AppSettings(
        image=image, focus_x=x, focus_y=y, k=k, disparity_map=disparity_map, depth_model=depth_model,
        simulate_lq=simulate_lq, sweep_kind=kind, sweep_frames=frames, sweep_k_max=k_max))


@pytest.fixture
def no_depth_weights(monkeypatch):
    """Every Depth Anything model unavailable, deterministically (whatever the local HF cache holds)."""
    reason = "Depth Anything V2 not available: test says no weights here."
    monkeypatch.setattr(depth_mod.DepthAnythingEstimator, "unavailable_reason", lambda self: reason)
    return reason


# ---------------------------------------------------------------------------------------------
# Depth-model selector
# ---------------------------------------------------------------------------------------------


def test_depth_menu_labels_every_model_with_its_licence():
    menu = dict((value, label) for label, value in app_support.depth_menu(with_status=False))
    assert list(menu) == ["auto", "embedded", "dadepth", "small", "base", "large", "approximate", "uploaded"]
    assert "Apache-2.0" in menu["small"] and "Small" in menu["small"]
    for name in ("base", "large"):
        assert "CC-BY-NC-4.0" in menu[name] and "Apache" not in menu[name]
    assert "DA depth" in menu["dadepth"] and "CC-BY-NC-4.0" in menu["dadepth"] and "unstated" in menu["dadepth"]
    assert "no weights" in menu["approximate"]
    panel = views.models_markdown()
    for model in DEPTH_MODELS.values():
        row = next(line for line in panel.splitlines() if model.label in line)
        assert model.licence in row
    assert "approximate" in panel and "no weights" in panel


def test_depth_menu_marks_models_that_cannot_run_here(no_depth_weights):
    menu = dict((value, label) for label, value in app_support.depth_menu())
    assert all("not available here" in menu[name] for name in DEPTH_MODELS)
    assert "not available here" not in menu["approximate"]
    assert "✗ not downloaded" in app_support.depth_models_markdown()


def test_depth_choice_reaches_the_core(tmp_path, monkeypatch, no_depth_weights):
    seen = []
    real = pipeline.render

    def spy(image, **kwargs):
        seen.append(kwargs["depth"])
        return real(image, **kwargs)

    monkeypatch.setattr(pipeline, "render", spy)
    disp = _map(tmp_path)
    # Approximate: even with an uploaded map, the explicit choice wins.
    *_, status, _, info = _ui(_photo(), depth_model="approximate", disparity_map=disp)
    assert seen[-1] == "approximate" and info["approximate_depth"] is True
    assert "approximate depth" in status
    # Automatic and "Uploaded map" use the uploaded map.
    for choice in ("auto", "uploaded"):
        info = _ui(_photo(), depth_model=choice, disparity_map=disp)[5]
        assert seen[-1] == disp and info["approximate_depth"] is False
        assert "supplied disparity map" in info["depth_source"]
    # An explicit model that cannot run here is refused with the core's reason...
    with pytest.raises(gr.Error, match="test says no weights here"):
        _ui(_photo(), depth_model="large")
    assert seen[-1] == "large"
    # ... while Automatic falls back to approximate depth and says why (a new photo: see the report
    # on the core's approximate-depth cache, which keeps the first call's notes).
    *_, status, _, info = _ui(_photo(1), depth_model="auto")
    assert seen[-1] == "auto" and info["approximate_depth"] is True
    assert "test says no weights here" in status and "Using approximate depth" in status


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth_model="uploaded"), "no disparity map is uploaded"),
        (dict(depth_model="giant"), "unknown depth source 'giant'"),
        (dict(simulate_lq=True, lq_seed=-3), "seed must be a whole number >= 0"),
        (dict(simulate_lq=True, lq_preset="jpeg"), "unknown degradation preset"),
    ],
)
def test_bad_depth_or_degradation_choices_become_gr_error(kwargs, message):
    with pytest.raises(gr.Error, match=message):
        _ui(_photo(), **kwargs)


def test_a_map_from_a_trained_model_runs_when_chosen(tiny_depth_model, monkeypatch):
    """An explicit model name goes through the core's estimator (a tiny local model stands in)."""
    monkeypatch.setitem(DEPTH_MODELS, "small", depth_mod.DepthModel(
        "small", str(tiny_depth_model), "Depth Anything V2 Small", "Apache-2.0"))
    info = _ui(_photo(), depth_model="small")[5]
    assert info["approximate_depth"] is False and "Depth Anything V2 Small" in info["depth_source"]


# ---------------------------------------------------------------------------------------------
# Low-quality simulation
# ---------------------------------------------------------------------------------------------


def test_simulated_low_quality_capture_is_the_before_image_and_repeats_per_seed(tmp_path):
    photo, disp = _photo(), _map(tmp_path)
    clean = np.asarray(photo)
    (before1, after1), _, _, status, files, info = _ui(photo, simulate_lq=True, lq_seed=1,
                                                       disparity_map=disp, k=0)
    assert before1.shape == after1.shape == clean.shape and info["output_size"] == [W, H]
    assert np.abs(before1.astype(int) - clean.astype(int)).mean() > 5  # visibly degraded
    assert "simulated low-quality capture: realesrgan x4, seed 1" in status
    assert Image.open(files[0]).size == (W, H)
    # K = 0 with the classical backend renders the input unchanged: the degraded photo was rendered.
    np.testing.assert_array_equal(after1, before1)

    again = _ui(photo, simulate_lq=True, lq_seed=1, disparity_map=disp)[0][0]
    np.testing.assert_array_equal(again, before1)  # same seed, same degradation
    other = _ui(photo, simulate_lq=True, lq_seed=2, disparity_map=disp)[0][0]
    assert not np.array_equal(other, before1)
    zoom = _ui(photo, simulate_lq=True, lq_seed=1, lq_preset="zoom", disparity_map=disp)[0][0]
    assert zoom.shape == clean.shape and not np.array_equal(zoom, before1)
    # Switched off: the clean photo again.
    np.testing.assert_array_equal(_ui(photo, disparity_map=disp)[0][0], clean)


def test_api_render_simulates_low_quality_too(tmp_path):
    pair, _, info = app.render(_photo(), 10, 10, 8, "classical", _map(tmp_path), simulate_lq=True, lq_seed=4)
    lq = app_support.simulate_low_quality(_photo(), preset="realesrgan", seed=4)
    np.testing.assert_array_equal(_pixels(pair[0]), (lq.rgb * 255 + 0.5).astype(np.uint8))
    assert any("simulated low-quality capture" in m for m in info["messages"])


def test_simulation_refuses_photos_too_small_to_degrade():
    tiny = Image.fromarray(np.full((24, 24, 3), 128, np.uint8))
    with pytest.raises(gr.Error, match="at least 32 px"):
        _ui(tiny, simulate_lq=True)


# ---------------------------------------------------------------------------------------------
# Sweep
# ---------------------------------------------------------------------------------------------


def test_sweep_makes_a_preview_a_strip_and_a_video_of_the_current_photo(tmp_path):
    gif, strip, files, status = _sweep(_photo(), frames=5, k_max=20, disparity_map=_map(tmp_path))
    with Image.open(gif) as im:  # small frames are previewed at their own size
        assert im.format == "WEBP" and im.n_frames == 5 and im.size == (W, H)
        im.seek(0)
        first = np.asarray(im.convert("RGB"))
    with Image.open(strip) as im:
        assert im.format == "PNG" and im.size == (5 * W, H)
        sheet = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(sheet[:, :W], np.asarray(_photo()))  # frame 0: K = 0
    # The preview's first frame is the strip's first frame up to lossy WebP compression (compared in
    # 4x4 block means: lossy WebP halves the colour resolution, which this noise photo feels fully).
    def blocks(a):
        return a.astype(float).reshape(H // 4, 4, W // 4, 4, 3).mean(axis=(1, 3))

    error = [np.abs(blocks(first) - blocks(sheet[:, i * W : (i + 1) * W])).mean() for i in range(5)]
    assert error[0] < 8 and error[0] < 0.5 * error[4]
    (video,) = files
    assert Path(video).suffix in (".mp4", ".webp") and Path(video).suffix.upper()[1:] in status
    assert "Aperture sweep:** 5 frames, K 0 → 20" in status and "supplied disparity map" in status
    # The far half (bottom) blurs more and more along the strip; the focused half does not.
    far = [float(np.var(np.diff(sheet[H // 2 + 4 : -4, i * W : (i + 1) * W].astype(float), axis=1)))
           for i in range(5)]
    assert all(a > b for a, b in zip(far, far[1:]))


def test_focus_sweep_and_its_notes(tmp_path):
    gif, strip, files, status = _sweep(_photo(), kind="focus", frames=3, k=12, disparity_map=_map(tmp_path))
    assert Image.open(gif).n_frames == 3 and Image.open(strip).size == (3 * W, H)
    assert "focal-plane disparity 1.00 → 0.00 at K = 12" in status
    assert "is not used" in status  # the clicked point does not apply to a focus sweep
    # Approximate depth works and says so.
    status = _sweep(_photo(), frames=2, depth_model="approximate")[3]
    assert "this sweep uses approximate depth" in status


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(frames=1), "between 2 and 120 frames"), (dict(k_max=0), "largest K above 0"),
     (dict(x=500), "outside the 96x64 image")],
)
def test_bad_sweep_settings_become_gr_error(kwargs, message):
    with pytest.raises(gr.Error, match=message):
        _sweep(_photo(), depth_model="approximate", **kwargs)


def test_sweep_without_a_photo_asks_for_one():
    with pytest.raises(gr.Error, match="Upload a photo"):
        _sweep(None)
