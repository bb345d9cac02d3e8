"""The two-stage backend: MagicBokeh restoration (K = 0) followed by the classical lens blur."""

import numpy as np

from diffusion_fixtures import scene, tiny_assets, tiny_options  # noqa: F401  (fixture)
from magicbokeh.backends import get_backend
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
    import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAGICBOKEH_BASE", str(tiny_assets.base_dir))
    monkeypatch.setenv("MAGICBOKEH_CHECKPOINT", str(tiny_assets.ckpt_path))
    labels = dict((name, label) for label, name in app.backend_choices(app.backend_table()))
    assert set(labels) == {"classical", "magicbokeh", "two-stage"}
    assert "CPU" in labels["magicbokeh"] and "per 512 px tile" in labels["magicbokeh"]
    assert "CPU" in labels["two-stage"]
    monkeypatch.setenv("MAGICBOKEH_CHECKPOINT", str(tiny_assets.ckpt_path) + ".missing")
    assert set(name for _, name in app.backend_choices(app.backend_table())) == {"classical"}


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
