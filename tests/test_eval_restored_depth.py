"""``--restored-depth MODEL`` in the evaluation tools: the two-stage row estimates depth again on
the restored photo (its label says so), the other rows are unchanged, and the option is refused
without a two-stage row. Runs on the tiny local MagicBokeh weights and Depth Anything folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from diffusion_fixtures import tiny_assets  # noqa: F401  (fixture)
from test_eval_sr_bokeh import _synthetic, _table_rows

from magicbokeh.eval import bokeh as eval_bokeh
from magicbokeh.eval import sr as eval_sr
from magicbokeh.eval.image_metrics import psnr
from magicbokeh.images import load_map, load_photo, to_uint8
from magicbokeh.pipeline import Focus, RenderSettings, render


def test_restored_depth_without_a_two_stage_row_exits_2(tmp_path: Path, capsys) -> None:
    root = _synthetic(tmp_path, n=1)
    assert eval_bokeh.main(["--data", str(root), "--backend", "classical", "--restored-depth", "small", "-q"]) == 2
    assert "--restored-depth applies to the two-stage backend" in capsys.readouterr().err
    hq = root / "aif"
    assert eval_sr.main(["--lq", str(hq), "--hq", str(hq), "--backend", "classical", "--restored-depth", "small",
                         "-q"]) == 2


def test_two_stage_row_uses_the_depth_of_the_restored_photo(tiny_assets, tiny_depth_model, tmp_path: Path,  # noqa: F811
                                                             capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MAGICBOKEH_BASE", str(tiny_assets.base_dir))
    monkeypatch.setenv("MAGICBOKEH_CHECKPOINT", str(tiny_assets.ckpt_path))
    monkeypatch.setenv("MAGICBOKEH_DEVICE", "cpu")
    root = _synthetic(tmp_path, n=1)
    model = str(tiny_depth_model)
    args = ["--data", str(root), "--input", "aif", "--backend", "two-stage", "--backend", "classical",
            "--metrics", "psnr", "-q"]
    assert eval_bokeh.main([*args, "--restored-depth", model]) == 0
    rows = _table_rows(capsys.readouterr().out)
    label = f"two-stage (depth of the restored photo: {model})"
    assert set(rows) == {label, "classical"} and rows["classical"][0] == "inf"
    assert eval_bokeh.main(args) == 0
    plain = _table_rows(capsys.readouterr().out)["two-stage"][0]

    # The same sample rendered directly with and without the option (sample s0: K 6, focus 0.3 on a
    # 0.2..1 ramp, as _synthetic writes it).
    meta = json.loads((root / "meta" / "s0.json").read_text())
    disp = load_map(str(root / "disparity" / "s0.npy"))
    focus = Focus.disparity((meta["focus_disparity"] - disp.min()) / (disp.max() - disp.min()))
    aif = load_photo(str(root / "aif" / "s0.png")).rgb
    gt = to_uint8(load_photo(str(root / "bokeh" / "s0.png")).rgb)

    def score(options: dict) -> float:
        out = render(aif, depth=disp, focus=focus, settings=RenderSettings(k=meta["K"], backend="two-stage",
                                                                            backend_options=options)).image
        return psnr(to_uint8(out), gt)

    with_option, without = score({"restored_depth": model}), score({})
    assert float(rows[label][0]) == pytest.approx(with_option, abs=0.01)
    assert float(plain) == pytest.approx(without, abs=0.01)
    assert abs(with_option - without) > 0.01  # the option changes the result
