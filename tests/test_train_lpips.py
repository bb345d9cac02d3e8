"""The MagicBokeh trainer's LPIPS loss: a configured LPIPS that cannot be built stops the run before
step 1 (exit 2, nothing trained or logged); ``loss.lpips_weight: 0`` trains with L2 only.

CPU, the tiny config (random tiny networks, synthetic data); ``lpips`` is replaced in ``sys.modules``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from magicbokeh.train import magicbokeh as trainer_mod
from magicbokeh.train.common import read_metrics
from magicbokeh.train.magicbokeh_config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "train_tiny.yaml"
REMEDY = "pip install -r requirements-train.txt, or set loss.lpips_weight: 0"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    for var in ("MAGICBOKEH_BASE", "MAGICBOKEH_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(old)


def _train(out: Path, *extra: str) -> int:
    return trainer_mod.main(["--config", str(TINY_CONFIG), "--output", str(out), "-q", *extra])


def test_unimportable_lpips_stops_the_run_before_step_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips raises ImportError
    out = tmp_path / "run"
    assert _train(out, "--max-steps", "2", "loss.lpips_weight=2") == 2
    err = capsys.readouterr().err
    assert REMEDY in err and "loss.lpips_weight=2" in err
    assert not (out / "metrics.jsonl").exists()
    assert not any(out.glob("checkpoint-*")) and not (out / "final").exists()


def test_lpips_whose_vgg_backbone_cannot_load_stops_the_run(tmp_path, monkeypatch, capsys):
    calls = []

    def no_backbone(**kwargs):
        calls.append(kwargs)
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=no_backbone))
    out = tmp_path / "run"
    assert _train(out, "--max-steps", "2", "loss.lpips_weight=0.5") == 2
    err = capsys.readouterr().err
    assert calls and calls[0]["net"] == "vgg"
    assert "vgg16-397923af.pth" in err and REMEDY in err
    assert not (out / "metrics.jsonl").exists()


def test_tiny_config_is_l2_only_and_trains_without_lpips(tmp_path, monkeypatch):
    assert load_config(TINY_CONFIG).loss.lpips_weight == 0.0
    assert load_config(REPO / "configs" / "train_magicbokeh.yaml").loss.lpips_weight == 2.0  # paper: L2 + LPIPS
    monkeypatch.setitem(sys.modules, "lpips", None)
    out = tmp_path / "run"
    assert _train(out, "--max-steps", "2") == 0
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert all("loss_lpips" not in r and r["loss"] == pytest.approx(r["loss_l2"]) for r in records)


class _MeanAbs(torch.nn.Module):
    """Stand-in for lpips.LPIPS: mean absolute difference per image, shape (B, 1, 1, 1) as lpips returns."""

    def forward(self, a, b):
        return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)


def test_a_working_lpips_is_part_of_the_loss(tmp_path, monkeypatch):
    built = []

    def make(**kwargs):
        built.append(kwargs)
        return _MeanAbs()

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=make))
    out = tmp_path / "run"
    assert _train(out, "--max-steps", "1", "loss.lpips_weight=2") == 0
    assert built == [{"net": "vgg", "verbose": False}]
    (record,) = read_metrics(out / "metrics.jsonl")
    assert record["loss_lpips"] > 0
    assert record["loss"] == pytest.approx(record["loss_l2"] + 2.0 * record["loss_lpips"], rel=1e-5)
