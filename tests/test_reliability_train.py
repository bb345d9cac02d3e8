"""Trainers: NaN/inf learning rates refused at start; a damaged trainer_state.json or truncated
optimizer state on resume is one ``error:`` line with exit 2 that names the checkpoint.

The depth trainer runs for real (tiny Depth Anything V2, 56 px crops, 2 steps, one thread); the
MagicBokeh trainer's resume readers are driven directly on files in its checkpoint format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import textured
from magicbokeh.errors import MagicBokehError
from magicbokeh.train import common
from magicbokeh.train import depth_distill as dd

CROP = 56


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray((textured(64, 64, seed=i) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def _args(teacher: Path, photos: Path, out: Path, *extra: str) -> list[str]:
    return ["--teacher", str(teacher), "--images", str(photos), "--output", str(out), "--crop", str(CROP),
            "--num-workers", "0", "--batch-size", "2", *extra]


@pytest.mark.parametrize("lr", ["nan", "inf"])
def test_depth_trainer_refuses_a_non_finite_learning_rate(tiny_depth_model, photos, tmp_path, capsys, lr) -> None:
    out = tmp_path / "run"
    assert dd.main(_args(tiny_depth_model, photos, out, "--steps", "1", "--lr", lr)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --lr") and "finite" in err[-1]
    assert not (out / "checkpoint-1").exists()


@pytest.mark.parametrize("key", ["optim.lr_bokeh", "optim.lr_sr_pretrain", "optim.weight_decay"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_magicbokeh_config_refuses_non_finite_values(key, value) -> None:
    from magicbokeh.train.magicbokeh_config import load_config

    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(MagicBokehError, match=rf"{key}=(nan|inf) must be a finite number"):
        load_config(repo / "configs" / "train_tiny.yaml", [f"{key}={value}"]).validate()


@pytest.fixture
def depth_run(tiny_depth_model, photos, tmp_path) -> tuple[list[str], Path]:
    out = tmp_path / "run"
    args = _args(tiny_depth_model, photos, out, "--steps", "2", "--save-every", "1", "--lr", "1e-4")
    assert dd.main(args) == 0
    ckpt = common.last_checkpoint(out)[1]
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return [*args[:-6], "--steps", "3", "--save-every", "1", "--lr", "1e-4"], ckpt


def test_depth_trainer_garbage_trainer_state_is_one_line(depth_run, capsys) -> None:
    args, ckpt = depth_run
    (ckpt / "trainer_state.json").write_bytes(b"\x00\x13garbage{")
    assert dd.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "trainer_state.json is damaged" in err and ckpt.name in err


def test_depth_trainer_truncated_optimizer_state_is_one_line(depth_run, capsys) -> None:
    args, ckpt = depth_run
    optim = [p for p in (ckpt / "state").iterdir() if p.name.startswith("optimizer")]
    assert optim, sorted(p.name for p in (ckpt / "state").iterdir())
    for path in optim:
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    assert dd.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: cannot resume from") and ckpt.name in err and "damaged or truncated" in err


def test_magicbokeh_trainer_damaged_resume_files(tmp_path) -> None:
    """check_resume / load_optimizers on a checkpoint in the trainer's own format, then damaged."""
    from magicbokeh.train.magicbokeh_checkpoint import RESUME_DIR, check_resume, load_optimizers, save_optimizers
    from magicbokeh.train.magicbokeh_config import load_config

    repo = Path(__file__).resolve().parents[1]
    config = load_config(repo / "configs" / "train_tiny.yaml", [])
    resume = tmp_path / "checkpoint-3" / RESUME_DIR
    resume.mkdir(parents=True)
    # Garbage trainer state.
    (resume / "trainer_state.json").write_text("{\"step\": 3, \"ranks\": ")
    with pytest.raises(MagicBokehError, match=r"trainer_state\.json is damaged.*checkpoint-3 aside"):
        check_resume(config, tmp_path / "checkpoint-3")
    (resume / "trainer_state.json").write_text("[1, 2]")
    with pytest.raises(MagicBokehError, match="not an object"):
        check_resume(config, tmp_path / "checkpoint-3")
    # A real optimizer state, saved, reloaded, then truncated.
    w = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.AdamW([w], lr=1e-3)
    w.grad = torch.full((4,), 0.5)
    opt.step()
    names = {"bokeh": ["w"]}
    save_optimizers(resume, {"bokeh": opt}, names)
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.ones(4))], lr=1e-3)
    load_optimizers({"bokeh": fresh}, resume, names)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    blob = resume / "optimizer-bokeh.safetensors"
    blob.write_bytes(blob.read_bytes()[:-7])
    with pytest.raises(MagicBokehError, match=r"cannot resume from .*checkpoint-3: its bokeh optimizer state is damaged"):
        load_optimizers({"bokeh": fresh}, resume, names)
    (resume / "optimizer-bokeh.json").write_text(json.dumps({"names": ["w"]}))  # param_groups missing
    with pytest.raises(MagicBokehError, match="damaged or truncated"):
        load_optimizers({"bokeh": fresh}, resume, names)
