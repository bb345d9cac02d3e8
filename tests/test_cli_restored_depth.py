"""``--restored-depth MODEL`` (render and sweep, ``--backend two-stage``): the two-stage backend
estimates depth again on the restored photo, and ``--json`` / ``--save-depth`` report that map.

Runs on the tiny local MagicBokeh weights and a tiny local Depth Anything folder (offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from diffusion_fixtures import scene, tiny_assets, tiny_options  # noqa: F401  (fixture)
from PIL import Image

from magicbokeh.cli import build_parser, main, settings_from_args
from magicbokeh.errors import MagicBokehError


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("MAGICBOKEH_BASE", "MAGICBOKEH_CHECKPOINT", "MAGICBOKEH_DEPTH_MODEL"):
        monkeypatch.delenv(var, raising=False)


def _inputs(tmp_path):
    img, disp = scene(72, 100)
    photo = tmp_path / "photo.png"
    Image.fromarray((img * 255).round().astype(np.uint8)).save(photo)
    np.save(tmp_path / "disp.npy", disp)
    return photo, tmp_path / "disp.npy"


@pytest.mark.parametrize("command", ["render", "sweep"])
def test_the_option_is_shared_by_render_and_sweep(command):
    args = build_parser().parse_args([command, "p.png", "-o", "o.png", "--backend", "two-stage",
                                      "--restored-depth", "small"])
    assert settings_from_args(args, 8.0).backend_options == {"restored_depth": "small"}
    plain = build_parser().parse_args([command, "p.png", "-o", "o.png", "--backend", "two-stage"])
    assert "restored_depth" not in settings_from_args(plain, 8.0).backend_options
    other = build_parser().parse_args([command, "p.png", "-o", "o.png", "--restored-depth", "small"])
    with pytest.raises(MagicBokehError, match="--restored-depth applies to --backend two-stage; got --backend classical"):
        settings_from_args(other, 8.0)


@pytest.mark.parametrize("command", ["render", "sweep"])
def test_restored_depth_with_another_backend_is_one_line_and_exit_2(tmp_path, capsys, command):
    photo, disp = _inputs(tmp_path)
    code = main([command, str(photo), "-o", str(tmp_path / "out.png"), "--depth", str(disp),
                 "--restored-depth", "small"])
    err = capsys.readouterr().err
    assert code == 2 and "--restored-depth applies to --backend two-stage" in err
    assert not (tmp_path / "out.png").exists()


def test_render_blurs_with_and_reports_the_depth_of_the_restored_photo(tiny_assets, tiny_depth_model, tmp_path,  # noqa: F811
                                                                       capsys, offline):
    from magicbokeh.backends import get_backend
    from magicbokeh.depth import get_estimator
    from magicbokeh.focus import normalise_disparity
    from magicbokeh.images import load_map, load_photo
    from magicbokeh.pipeline import Focus, RenderSettings, render

    photo, disp = _inputs(tmp_path)
    out, saved = tmp_path / "out.png", tmp_path / "depth.png"
    options = tiny_options(tiny_assets)
    code = main(["render", str(photo), "-o", str(out), "--depth", str(disp), "--focus-disparity", "0.9",
                 "--K", "12", "--backend", "two-stage", "--base", options["base"], "--checkpoint",
                 options["checkpoint"], "--device", "cpu", "--dtype", "fp32", "--restored-depth",
                 str(tiny_depth_model), "--save-depth", str(saved), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    info = json.loads(captured.out)
    assert info["backend"] == "two-stage"
    assert info["depth_source"].endswith("estimated on the restored photo")
    assert any("re-estimated on the restored photo" in m for m in info["messages"])

    # Independently: restore (K = 0) with the input's map, estimate depth on that with the tiny model.
    rgb = load_photo(str(photo)).rgb
    given = render(rgb, depth=str(disp), focus=Focus.disparity(0.9), settings=RenderSettings(k=0)).disparity
    restored = get_backend("magicbokeh").render(rgb, given, 0.9, 0.0, options=options, image_key="ref").image
    expected = normalise_disparity(np.asarray(get_estimator(str(tiny_depth_model))(restored), np.float32))
    written = load_map(str(saved))
    np.testing.assert_allclose(written, expected, atol=2e-3)  # a 16-bit PNG of that map
    assert np.abs(written - given).mean() > 0.05  # not the input's map
