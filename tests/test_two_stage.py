"""The two-stage backend: MagicBokeh restoration (K = 0) followed by the classical lens blur."""

import numpy as np
import pytest

from diffusion_fixtures import scene, tiny_assets, tiny_options  # noqa: F401  (fixture)
from magicbokeh.backends import get_backend
from magicbokeh.errors import MagicBokehError
from magicbokeh.pipeline import Focus, RenderSettings, render


def test_two_stage_is_restoration_then_classical_blur(tiny_assets, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    img, disp = scene(72, 100)
    options = tiny_options(tiny_assets)
    two = render(img, depth=disp, focus=Focus.disparity(0.8),
                 settings=RenderSettings(k=20, backend="two-stage", backend_options=options))
    assert two.backend == "two-stage" and two.image.shape == img.shape
    assert any("restoration" in m for m in two.messages)

    # The same two steps by hand, through the registered backends.
    restored = get_backend("magicbokeh").render(img, two.disparity, 0.8, 0.0, options=options, image_key="x")
    expected = get_backend("classical").render(restored.image, two.disparity, 0.8, 20, options={}, image_key="x")
    np.testing.assert_allclose(two.image, expected.image, atol=1e-5)
    # Restoration alone changes the photo (the tiny model is not an identity) and the blur acts on top.
    assert np.abs(restored.image - img).mean() > 1e-3
    assert np.abs(two.image - restored.image).mean() > 1e-3


def test_two_stage_availability_follows_the_magicbokeh_backend(tiny_assets, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MAGICBOKEH_BASE", raising=False)
    monkeypatch.delenv("MAGICBOKEH_CHECKPOINT", raising=False)
    two = get_backend("two-stage")
    assert two.availability(tiny_options(tiny_assets)).ok
    assert two.availability({"checkpoint": str(tiny_assets.ckpt_path) + ".missing"}).ok is False


def test_app_menu_labels_diffusion_backends_with_device_and_speed(tiny_assets, monkeypatch):  # noqa: F811
    from magicbokeh.app_settings import ModelSources
    from magicbokeh.ui.handlers import backend_table
    from magicbokeh.ui.views import backend_choices

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sources = ModelSources(base=str(tiny_assets.base_dir), checkpoint=str(tiny_assets.ckpt_path))
    labels = dict((name, label) for label, name in backend_choices(backend_table(sources)))
    assert set(labels) == {"classical", "magicbokeh", "two-stage"}
    assert "CPU" in labels["magicbokeh"] and "per 512 px tile" in labels["magicbokeh"]
    assert "CPU" in labels["two-stage"]
    missing = ModelSources(base=str(tiny_assets.base_dir), checkpoint=str(tiny_assets.ckpt_path) + ".missing")
    assert set(name for _, name in backend_choices(backend_table(missing))) == {"classical"}


def test_core_reports_the_maps_the_diffusion_backend_really_used(tiny_assets, tmp_path, monkeypatch):  # noqa: F811
    from magicbokeh.focus import defocus_map, quantise_disparity_8bit

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    img, disp = scene(72, 100)
    res = render(img, depth=disp, focus=Focus.disparity(0.8),
                 settings=RenderSettings(k=20, backend="magicbokeh", backend_options=tiny_options(tiny_assets)))
    # Official parity: 8-bit truncated disparity and focus (0.8 * 255 = 204 -> 204 / 255).
    assert res.focus_disparity == quantise_disparity_8bit(np.float32([[0.8]]))[0, 0]
    np.testing.assert_array_equal(res.defocus, defocus_map(quantise_disparity_8bit(res.disparity), res.focus_disparity, 20))
    np.testing.assert_array_equal(res.in_focus, res.defocus <= 0.1)


class BrightnessDepth:
    """A deterministic stand-in for a depth network: brighter = nearer (mean of R, G, B).

    It records every image it is called on, so a test can check which photo the depth came from.
    """

    label = "brightness depth (test)"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        self.seen.append(np.array(rgb, copy=True))
        return np.asarray(rgb, np.float32).mean(axis=2)


def test_transfer_focus_keeps_the_same_surface_sharp():
    from magicbokeh.two_stage import transfer_focus

    # Two planes whose order flips between the maps: the surface in focus keeps its focus.
    old = np.full((40, 60), 0.2, np.float32)
    old[:, 30:] = 0.8
    new = np.where(old > 0.5, np.float32(0.1), np.float32(0.6))
    assert transfer_focus(old, new, 0.8) == pytest.approx(0.1)
    assert transfer_focus(old, new, 0.2) == pytest.approx(0.6)
    # A focus between the planes picks the nearer plane's pixels (the 1 % nearest in disparity).
    assert transfer_focus(old, new, 0.75) == pytest.approx(0.1)
    # A mirrored ramp: the pixels at disparity f on the old map lie at 1 - f on the new one.
    ramp = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (8, 1))
    for f in (0.1, 0.5, 0.9):
        assert transfer_focus(ramp, 1 - ramp, f) == pytest.approx(1 - f, abs=2 / 255)
    with pytest.raises(MagicBokehError, match="shape"):
        transfer_focus(old, new[:, :10], 0.5)


def test_two_stage_can_estimate_depth_again_on_the_restored_photo(tiny_assets, tmp_path, monkeypatch):  # noqa: F811
    from magicbokeh.focus import defocus_map, normalise_disparity
    from magicbokeh.two_stage import RESTORED_DEPTH, transfer_focus

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    img, disp = scene(72, 100)
    options = tiny_options(tiny_assets)
    estimator = BrightnessDepth()
    two = render(img, depth=disp, focus=Focus.disparity(0.8),
                 settings=RenderSettings(k=20, backend="two-stage",
                                         backend_options={**options, RESTORED_DEPTH: estimator}))

    # The input's disparity as the core reads it (the classical backend reports it unchanged).
    given = render(img, depth=disp, focus=Focus.disparity(0.8), settings=RenderSettings(k=0)).disparity
    # The depth came from the restored photo, once, and not from the input.
    restored = get_backend("magicbokeh").render(img, given, 0.8, 0.0, options=options, image_key="x").image
    assert len(estimator.seen) == 1
    np.testing.assert_allclose(estimator.seen[0], restored, atol=1e-6)
    assert np.abs(estimator.seen[0] - img).mean() > 1e-3

    # The blur used that map, min-max normalised, with the focus moved to the same surface.
    raw = restored.mean(axis=2)
    new = normalise_disparity(raw)  # min-max, as the backend does (one place for that math)
    focus = transfer_focus(given, new, 0.8)
    expected = get_backend("classical").render(restored, new, focus, 20, options={}, image_key="x").image
    np.testing.assert_allclose(two.image, expected, atol=1e-4)
    # ... which is not what the input's disparity gives, and the core reports what was used.
    old_way = get_backend("classical").render(restored, given, 0.8, 20, options={}, image_key="x").image
    assert np.abs(two.image - old_way).mean() > 1e-3
    assert two.focus_disparity == pytest.approx(focus)
    # The reported disparity (info, --save-depth) is the re-estimated map, named as such.
    np.testing.assert_allclose(two.disparity, new, atol=1e-5)
    assert np.abs(given - new).mean() > 1e-2
    assert two.depth_source == "brightness depth (test), estimated on the restored photo"
    assert not two.approximate_depth
    np.testing.assert_allclose(two.defocus, defocus_map(new, focus, 20), atol=1e-5)
    assert any("re-estimated on the restored photo" in m for m in two.messages)


def test_two_stage_names_an_unusable_restored_depth_model(tiny_assets, tmp_path, monkeypatch):  # noqa: F811
    from magicbokeh.two_stage import RESTORED_DEPTH

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = {**tiny_options(tiny_assets), RESTORED_DEPTH: str(tmp_path / "missing.pth")}
    two = get_backend("two-stage")
    availability = two.availability(options)
    assert not availability.ok and RESTORED_DEPTH in availability.reason
    img, disp = scene(72, 100)
    with pytest.raises(MagicBokehError, match=RESTORED_DEPTH):
        two.render(img, disp, 0.8, 20, options=options, image_key="x")
