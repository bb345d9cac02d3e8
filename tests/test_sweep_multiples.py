"""Aperture sweep by multiples of a base K ("from 1x blur to 3x blur", supplement Fig. 3): one frame per
multiple, and the frame at multiple m is exactly ``render --K m*BASE`` (rendered separately, compared
pixel for pixel)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from magicbokeh import sweep as sweep_mod
from magicbokeh.cli import main
from magicbokeh.errors import MagicBokehError
from magicbokeh.images import save_png
from magicbokeh.pipeline import Focus, RenderRequest, RenderSettings, run

SIZE = 64
BASE = 6.0


@pytest.fixture
def scene(tmp_path):
    """Noise photo and a left-to-right disparity ramp (16-bit), so every K changes the far side."""
    rgb = np.random.default_rng(1).uniform(0.1, 0.9, (SIZE, SIZE, 3)).astype(np.float32)
    ramp = np.tile(np.linspace(1.0, 0.0, SIZE, dtype=np.float32), (SIZE, 1))
    return save_png(tmp_path / "photo.png", rgb), save_png(tmp_path / "disp.png", ramp, bits=16)


def _frame(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_cli_frames_are_renders_at_each_multiple_of_the_base_k(scene, tmp_path, capsys):
    photo, disp = scene
    frames = tmp_path / "frames"
    common = ["--depth", str(disp), "--focus", "4,32"]
    assert main(["sweep", str(photo), "-o", str(frames), "--kind", "aperture", "--K", f"{BASE:g}",
                 "--k-multiples", "1,2,3", "--json", *common]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 3 and info["K"] == [BASE, 2 * BASE, 3 * BASE] and info["K_multiples"] == [1, 2, 3]
    assert sorted(p.name for p in frames.iterdir()) == ["frame_000.png", "frame_001.png", "frame_002.png"]
    renders = []
    for m in (1, 3):
        out = tmp_path / f"render_{m}.png"
        assert main(["render", str(photo), "-o", str(out), "--K", f"{m * BASE:g}", "-q", *common]) == 0
        renders.append(_frame(out))
    np.testing.assert_array_equal(_frame(frames / "frame_000.png"), renders[0])  # 1x = render --K BASE
    np.testing.assert_array_equal(_frame(frames / "frame_002.png"), renders[1])  # 3x = render --K 3*BASE
    assert np.abs(renders[0].astype(int) - renders[1]).mean() > 1  # the blur really grows


def test_api_sweep_by_multiples_matches_single_runs(scene):
    photo, disp = scene
    request = RenderRequest(str(photo), depth=str(disp), focus=Focus.point(4, 32), settings=RenderSettings(k=BASE))
    result = sweep_mod.render_sweep(request, kind="aperture", k_multiples=[1, 2.5])
    assert result.k == [BASE, 2.5 * BASE] and result.values == result.k and result.k_multiples == [1.0, 2.5]
    for k, frame in zip(result.k, result.frames):
        single = run(RenderRequest(str(photo), depth=str(disp), focus=Focus.point(4, 32), settings=RenderSettings(k=k)))
        np.testing.assert_array_equal(frame, np.clip(np.round(single.image * 255), 0, 255).astype(np.uint8))


def test_multiples_parse_and_validate():
    assert sweep_mod.parse_k_multiples("1,2,3") == [1.0, 2.0, 3.0]
    assert sweep_mod.parse_k_multiples(" 1x, 1.5x 3 ") == [1.0, 1.5, 3.0]
    assert sweep_mod.aperture_multiples(8, [1, 2, 4]) == [8.0, 16.0, 32.0]
    for text, needle in (("1,two", "numbers separated by commas"), ("2", "2 to 120 multiples"),
                         ("1,-1", "finite numbers >= 0"), ("1,nan", "finite numbers >= 0")):
        with pytest.raises(MagicBokehError, match=needle):
            sweep_mod.parse_k_multiples(text)
    with pytest.raises(MagicBokehError, match=r"12 x 3 = 36 is above the largest K 32; use a base K of at most 10.67"):
        sweep_mod.aperture_multiples(12, [1, 3])
    with pytest.raises(MagicBokehError, match="base K above 0"):
        sweep_mod.aperture_multiples(0, [1, 3])


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--k-multiples", "1,2,3", "--frames", "3"], "drop --frames and --k-max"),
        (["--k-multiples", "1,2,3", "--k-max", "20"], "drop --frames and --k-max"),
        (["--kind", "focus", "--k-multiples", "1,2"], "applies to an aperture sweep"),
        (["--K", "16", "--k-multiples", "1,2,3"], "16 x 3 = 48 is above the largest K 32"),
        (["--k-multiples", "1"], "2 to 120 multiples"),
    ],
)
def test_cli_bad_multiples_exit_2_before_rendering(scene, tmp_path, capsys, monkeypatch, extra, needle):
    photo, disp = scene

    def must_not_render(*args, **kwargs):
        raise AssertionError("rendered although the input was refused")

    monkeypatch.setattr(sweep_mod, "render_sweep", must_not_render)
    code = main(["sweep", str(photo), "-o", str(tmp_path / "x.gif"), "--depth", str(disp), "-q", *extra])
    assert code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists()
