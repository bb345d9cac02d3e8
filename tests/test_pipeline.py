"""The core API: result contents, depth caching, depth sources, focus modes, bad inputs."""

import numpy as np
import pytest

from conftest import textured
from magicbokeh import depth as depth_mod
from magicbokeh.depth import DEPTH_CACHE
from magicbokeh.notes import is_warning
from magicbokeh.errors import MagicBokehError
from magicbokeh.pipeline import Focus, RenderSettings, render


def scene(h=64, w=96):
    img = textured(h, w, seed=7)
    disp = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
    return img, disp


def test_result_has_maps_timings_and_sources():
    img, disp = scene()
    res = render(img, depth=disp, focus=Focus.point(48, 10), settings=RenderSettings(k=16))
    assert res.image.shape == img.shape and res.disparity.shape == disp.shape
    assert res.focus_point == (48, 10)
    assert res.focus_disparity == pytest.approx(disp[10, 45:52].mean(), abs=0.02)
    assert np.allclose(res.defocus, np.abs(res.disparity - res.focus_disparity) * 0.5)
    assert np.array_equal(res.in_focus, res.defocus <= 0.1)
    assert res.backend == "classical" and res.depth_source.startswith("supplied disparity map")
    assert {"decode", "depth", "render", "total"} <= set(res.timings)
    info = res.info()
    assert info["input_size"] == [96, 64] and info["output_size"] == [96, 64]


def test_changing_k_or_focus_never_recomputes_depth(monkeypatch, tiny_depth_model):
    calls = []
    original = depth_mod.DepthAnythingEstimator.__call__

    def counting(self, rgb):
        calls.append(rgb.shape)
        return original(self, rgb)

    monkeypatch.setattr(depth_mod.DepthAnythingEstimator, "__call__", counting)
    img, _ = scene()
    first = render(img, depth=str(tiny_depth_model), focus=Focus.point(10, 10), settings=RenderSettings(k=8))
    second = render(img, depth=str(tiny_depth_model), focus=Focus.point(80, 50), settings=RenderSettings(k=24))
    third = render(img, depth=str(tiny_depth_model), focus=Focus.disparity(0.3), settings=RenderSettings(k=2))
    assert len(calls) == 1 and DEPTH_CACHE.hits == 2
    assert first.depth_source == f"Depth Anything V2 ({tiny_depth_model})"
    assert np.array_equal(first.disparity, second.disparity) and np.array_equal(second.disparity, third.disparity)
    assert first.disparity.shape == (64, 96) and first.disparity.min() == 0.0 and first.disparity.max() <= 1.0
    assert not first.approximate_depth


def test_offline_auto_depth_falls_back_to_labelled_approximation(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    img, _ = scene()
    img[20:44, 30:66] = (0.9, 0.2, 0.2)  # an obvious subject
    res = render(img, focus=Focus.point(48, 32), settings=RenderSettings(k=16))
    assert res.approximate_depth
    assert any("approximate depth" in m for m in res.messages)
    assert any("HF_HUB_OFFLINE" in m for m in res.messages)
    # The clicked subject is in front and in focus; the top of the frame is far and blurred.
    assert res.in_focus[32, 48] and not res.in_focus[2, 5]
    assert res.disparity[32, 48] > res.disparity[2, 48]


def test_explicit_unavailable_model_is_an_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    img, _ = scene()
    with pytest.raises(MagicBokehError, match="not available"):
        render(img, depth="someone/not-cached-depth-model")


def test_mask_focus_and_official_parity_point():
    img, disp = scene()
    mask = np.zeros(disp.shape, np.uint8)
    mask[:, 70:80] = 200
    res = render(img, depth=disp, focus=Focus.mask(mask), settings=RenderSettings(k=10))
    assert res.focus_disparity == pytest.approx(np.sort(disp[mask > 0])[(mask > 0).sum() // 2 - 1], abs=1e-6)
    parity = render(img, depth=disp, focus=Focus.point(33, 5, parity=True))
    assert parity.focus_disparity * 255 == pytest.approx(round(parity.focus_disparity * 255), abs=1e-4)


def test_bad_inputs_raise_clear_errors():
    img, disp = scene()
    with pytest.raises(MagicBokehError, match="outside the 96x64 image"):
        render(img, depth=disp, focus=Focus.point(500, 5))
    with pytest.raises(MagicBokehError, match="K=33"):
        render(img, depth=disp, settings=RenderSettings(k=33))
    bad = disp.copy()
    bad[3, 3] = np.inf
    with pytest.raises(MagicBokehError, match="NaN or infinite"):
        render(img, depth=bad)
    with pytest.raises(MagicBokehError, match="unknown backend"):
        render(img, depth=disp, settings=RenderSettings(backend="nope"))
    with pytest.raises(MagicBokehError, match="focus mask is"):
        render(img, depth=disp, focus=Focus.mask(np.ones((5, 5))))
    with pytest.raises(MagicBokehError, match="outside \\[0, 1\\]"):
        Focus.disparity(1.5)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, magicbokeh; magicbokeh.__version__; print('torch' in sys.modules, 'gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_approximate_depth_notes_belong_to_each_call(monkeypatch):
    """The cached approximate map is shared, but only a fallback says why it fell back."""
    from magicbokeh import depth
    from magicbokeh.images import load_photo
    from magicbokeh.pipeline import resolve_disparity

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(depth.DepthAnythingEstimator, "unavailable_reason", lambda self: "no model here.")
    photo = load_photo(np.full((32, 48, 3), 0.5, np.float32))
    asked = resolve_disparity(photo, "approximate")
    fallback = resolve_disparity(photo, "auto")
    assert asked.approximate and fallback.approximate
    assert np.array_equal(asked.disparity, fallback.disparity)
    assert asked.messages == ()
    assert fallback.messages == ("no model here. Using approximate depth.",)
    assert is_warning(fallback.messages[0])  # carried as a warning: no caller classifies the text
    assert resolve_disparity(photo, "approximate").messages == ()
