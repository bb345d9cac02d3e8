"""``python -m magicbokeh mask``: the official LDF mask or a clicked subject, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ldf_formula_state
from magicbokeh.cli import main
from magicbokeh.subject import sam
from magicbokeh.subject.ldf_net import LDF



pytestmark = pytest.mark.usefixtures("isolated_subject_models")


def _photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(p)
    return p


def test_mask_matches_the_official_prepare_data_output(tmp_path, ldf_official):
    pth = tmp_path / "model-40"
    torch.save(ldf_formula_state(ldf_official), pth)
    out = tmp_path / "mask.png"
    assert main(["mask", str(ldf_official / "photo_300x460.png"), "-o", str(out), "--saliency-model", str(pth), "-q"]) == 0
    ours = np.asarray(Image.open(out))
    ref = np.asarray(Image.open(ldf_official / "official_photo_300x460.png"))
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    assert np.mean(np.abs(ours.astype(int) - ref.astype(int)) <= 1) >= 0.995


def test_mask_from_the_environment_variable(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    pth = tmp_path / "model-40"
    torch.save(LDF().state_dict(), pth)
    monkeypatch.setenv("MAGICBOKEH_SALIENCY_MODEL", str(pth))
    out = tmp_path / "m.png"
    assert main(["mask", str(_photo(tmp_path)), "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "ldf" and info["model"] == str(pth) and (info["width"], info["height"]) == (56, 40)
    assert np.asarray(Image.open(out)).shape == (40, 56)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_errors_exit_non_zero_and_write_nothing(tmp_path, capsys):
    photo = _photo(tmp_path)
    out = tmp_path / "m.png"
    assert main(["mask", str(photo), "-o", str(out)]) == 2
    assert "no saliency model configured" in capsys.readouterr().err and not out.exists()
    assert main(["mask", str(photo), "-o", str(tmp_path / "m.jpg"), "--saliency-model", str(photo)]) == 2
    assert "-o must name a .png" in capsys.readouterr().err
    assert main(["mask", str(photo), "-o", str(out), "--saliency-model", str(tmp_path / "none.pth")]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert main(["mask", str(photo), "-o", str(out), "--saliency-model", str(photo)]) == 2
    assert "cannot read photo.png" in capsys.readouterr().err and not out.exists()
    assert main(["mask", str(photo), "-o", str(out), "--point", "56,3"]) == 2
    assert "outside the 56x40 image" in capsys.readouterr().err and not out.exists()


def test_point_mask_without_sam_weights_uses_grabcut(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sam.hub, "cached_file", lambda *a, **k: None)
    monkeypatch.setattr(sam.hub, "hub_reachable", lambda *a, **k: False)
    img = np.zeros((60, 80, 3), np.uint8)
    img[...] = (30, 140, 50)
    img[15:45, 20:50] = (220, 40, 30)
    photo = tmp_path / "p.png"
    Image.fromarray(img).save(photo)
    out = tmp_path / "m.png"
    assert main(["mask", str(photo), "-o", str(out), "--point", "35,30", "--point", "70,50,0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "grabcut" and "GrabCut" in info["messages"][0]
    mask = np.asarray(Image.open(out))
    assert set(np.unique(mask)) <= {0, 255}
    assert mask[20:40, 25:45].all() and not mask[:10].any()
