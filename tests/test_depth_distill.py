"""DA-depth distillation: losses, checkpoint helpers, the image-folder dataset, and short CPU runs.

The runs use tiny Depth Anything V2 models (hidden 16, patch 14) on 56 px crops, in-process, one
torch thread (the test machine is shared), no downloads.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import textured
from magicbokeh.errors import MagicBokehError
from magicbokeh.train import common
from magicbokeh.train import depth_distill as dd
from magicbokeh.train import depth_distill_loop
from magicbokeh.train.image_folder import EpochSampler, ImageFolderPairs

CROP = 56


@pytest.fixture(autouse=True)
def _one_thread_fresh_accelerate():
    """One torch thread (2 shared cores) and a fresh accelerate singleton state per test."""
    from accelerate.state import AcceleratorState, GradientState

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def healthy_teacher(tmp_path_factory) -> Path:
    """A tiny Depth Anything V2 folder whose head carries signal (init std 0.1, not 0.02).

    With the default 0.02 init the random head's output is ~1e-7 and any optimizer step swamps it,
    so a 20-step run could not show learning of the output term.
    """
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    folder = tmp_path_factory.mktemp("teacher-healthy")
    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=28,
        patch_size=14, out_features=["stage1", "stage2"], reshape_hidden_states=False, apply_layernorm=True,
        initializer_range=0.1,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, fusion_hidden_size=8, neck_hidden_sizes=[8, 16],
        reassemble_factors=[2, 1], head_hidden_size=8, initializer_range=0.1,
    )
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """6 small photos in nested folders (one smaller than the crop, one RGBA) + one corrupt JPEG."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "sub").mkdir()
    sizes = [(56, 64), (60, 72), (64, 56), (58, 80), (40, 50), (70, 60)]
    for i, (h, w) in enumerate(sizes):
        rgb = (textured(h, w, seed=i) * 255).astype(np.uint8)
        target = folder / ("sub" if i % 2 else ".") / f"photo{i}.png"
        if i == 3:
            Image.fromarray(rgb).convert("RGBA").save(target)
        else:
            Image.fromarray(rgb).save(target)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    return folder


def _args(teacher: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return ["--teacher", str(teacher), "--images", str(images), "--output", str(out), "--crop", str(CROP),
            "--num-workers", "0", "--log-every", "1", *extra]


def _losses(out: Path, key: str = "loss") -> dict[int, float]:
    return {r["step"]: r[key] for r in common.read_metrics(out / "metrics.jsonl") if key in r}


# ---------------------------------------------------------------------------------------------
# Losses and metric
# ---------------------------------------------------------------------------------------------


def test_scale_shift_invariant_loss():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 8, 8, generator=g) + 0.5
    assert float(dd.scale_shift_invariant_loss(3.0 * target + 2.0, target)) < 1e-5
    assert float(dd.scale_shift_invariant_loss(1e-7 * target, 1e6 * target)) < 1e-4  # any magnitude
    other = torch.rand(2, 8, 8, generator=g)
    unrelated = float(dd.scale_shift_invariant_loss(other, target))
    assert 0.3 < unrelated < 2.0
    # Invariant to the prediction's scale and shift, and differentiable.
    pred = other.clone().requires_grad_(True)
    loss = dd.scale_shift_invariant_loss(5.0 * pred - 1.0, target)
    assert float(loss.detach()) == pytest.approx(unrelated, rel=1e-4)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # Pixels outside the mask (or non-finite in the target) do not count.
    broken = target.clone()
    broken[:, :, :4] = float("nan")
    pred2 = 2 * target
    pred2[:, :, :4] = 100.0
    assert float(dd.scale_shift_invariant_loss(pred2, broken)) < 1e-5
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[:, :, :4] = False
    assert float(dd.scale_shift_invariant_loss(pred2, target, mask)) < 1e-5
    # A constant prediction is not a crash: the fit falls back to the target's mean.
    assert np.isfinite(float(dd.scale_shift_invariant_loss(torch.zeros_like(target), target)))


def test_feature_loss_compares_layer_normed_patch_tokens():
    g = torch.Generator().manual_seed(1)
    teacher = [torch.randn(2, 1 + 16, 8, generator=g) for _ in range(4)]
    assert float(dd.feature_distillation_loss(teacher, teacher, num_patches=16)) == 0.0
    # Per-token affine changes vanish under the layer norm; the class token is not compared.
    scaled = [2.0 * t + 1.0 for t in teacher]
    for t in scaled:
        t[:, 0] = 99.0
    assert float(dd.feature_distillation_loss(scaled, teacher, num_patches=16)) < 1e-8
    noisy = [t + torch.randn(t.shape, generator=g) for t in teacher]
    assert float(dd.feature_distillation_loss(noisy, teacher, num_patches=16)) > 0.1
    with pytest.raises(ValueError):
        dd.feature_distillation_loss(teacher[:3], teacher, num_patches=16)


def test_absrel_against_teacher():
    t = torch.rand(2, 6, 6) + 0.1
    assert torch.allclose(dd.absrel_against_teacher(4 * t + 3, t), torch.zeros(2, dtype=torch.float64), atol=1e-6)
    assert float(dd.absrel_against_teacher(torch.rand(2, 6, 6), t).min()) > 0.01


def test_lr_schedule():
    kw = dict(total=100, warmup=10)
    assert dd.lr_lambda(0, schedule="cosine", **kw) == pytest.approx(0.1)
    assert dd.lr_lambda(9, schedule="cosine", **kw) == pytest.approx(1.0)
    assert dd.lr_lambda(55, schedule="cosine", **kw) == pytest.approx(0.5)
    assert dd.lr_lambda(100, schedule="cosine", **kw) == pytest.approx(0.0)
    assert dd.lr_lambda(80, schedule="constant", **kw) == 1.0


# ---------------------------------------------------------------------------------------------
# Shared training helpers
# ---------------------------------------------------------------------------------------------


def test_atomic_checkpoints_and_resume_discovery(tmp_path):
    with common.atomic_checkpoint(tmp_path, 5) as tmp:
        (tmp / "weights.bin").write_text("five")
        assert common.last_checkpoint(tmp_path) is None  # not published while being written
    assert common.last_checkpoint(tmp_path) == (5, tmp_path / "checkpoint-5")
    with pytest.raises(RuntimeError):
        with common.atomic_checkpoint(tmp_path, 10) as tmp:
            (tmp / "weights.bin").write_text("half")
            raise RuntimeError("killed while saving")
    (tmp_path / "checkpoint-20").mkdir()  # no marker: e.g. copied by hand, incomplete
    assert common.last_checkpoint(tmp_path)[0] == 5
    removed = common.remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == ["checkpoint-10.tmp"]
    for step in (10, 15):
        with common.atomic_checkpoint(tmp_path, step) as tmp:
            (tmp / "weights.bin").write_text(str(step))
    with common.atomic_checkpoint(tmp_path, 15) as tmp:  # saving a step again replaces it
        (tmp / "weights.bin").write_text("15b")
    assert (tmp_path / "checkpoint-15" / "weights.bin").read_text() == "15b"
    assert [s for s, _ in common.list_checkpoints(tmp_path)] == [5, 10, 15]
    common.prune_checkpoints(tmp_path, keep=2)
    assert [s for s, _ in common.list_checkpoints(tmp_path)] == [10, 15]


def test_metrics_log_truncates_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = common.MetricsLog(path)
    for step in range(1, 5):
        log.write({"step": step, "loss": 1.0 / step, "lr": float("nan")})
    with path.open("a") as fh:
        fh.write('{"step": 5, "lo')  # torn line: the process died mid-write
    assert [r["step"] for r in common.read_metrics(path)] == [1, 2, 3, 4]
    assert common.read_metrics(path)[0]["lr"] is None
    common.MetricsLog(path, resume_step=2).write({"step": 3, "loss": 0.5})
    assert [(r["step"], r["loss"]) for r in common.read_metrics(path)] == [(1, 1.0), (2, 0.5), (3, 0.5)]
    common.MetricsLog(path)  # a fresh run starts an empty file
    assert common.read_metrics(path) == []
    with pytest.raises(ValueError):
        log.write({"loss": 1.0})


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


def test_image_folder_pairs(photos, tmp_path, caplog):
    degrade_fn = dd.PresetDegradation("realesrgan", 4.0)
    with caplog.at_level(logging.WARNING):
        data = ImageFolderPairs(photos, crop=CROP, degrade_fn=degrade_fn, seed=3)
    assert len(data) == 6 and [p.name for p in data.skipped] == ["broken.jpg"]
    assert "1 unreadable" in caplog.text
    item = data[4]  # the 40x50 photo is resized up to cover the crop
    assert item["clean"].shape == item["degraded"].shape == (3, CROP, CROP)
    assert item["clean"].dtype == torch.float32 and 0 <= float(item["clean"].min()) <= float(item["clean"].max()) <= 1
    assert float((item["clean"] - item["degraded"]).abs().mean()) > 0.005  # really degraded
    again = pickle.loads(pickle.dumps(data))[4]  # workers get a pickled copy: same sample
    assert torch.equal(again["clean"], item["clean"]) and torch.equal(again["degraded"], item["degraded"])
    data.set_epoch(1)
    assert not torch.equal(data[4]["degraded"], item["degraded"])  # fresh randomness each epoch
    val = ImageFolderPairs(photos, crop=CROP, degrade_fn=degrade_fn, seed=3, train=False)
    val.set_epoch(7)
    assert torch.equal(val[0]["degraded"], ImageFolderPairs(photos, crop=CROP, degrade_fn=degrade_fn, seed=3,
                                                             train=False)[0]["degraded"])
    # A file that breaks after the build-time check is replaced, not fatal.
    data.paths[2] = photos / "broken.jpg"
    with caplog.at_level(logging.WARNING):
        assert data[2]["index"] == 2
    assert "using the next image" in caplog.text
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bad.png").write_bytes(b"nope")
    with pytest.raises(MagicBokehError, match="no readable images"):
        ImageFolderPairs(tmp_path / "empty", crop=CROP)
    with pytest.raises(MagicBokehError, match="does not exist"):
        ImageFolderPairs(tmp_path / "missing", crop=CROP)


def test_epoch_sampler_is_seeded_by_epoch():
    sampler = EpochSampler(10, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and first == list(EpochSampler(10, seed=1))
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(EpochSampler(4, shuffle=False)) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------------------------


def test_distillation_learns_and_only_the_student_changes(healthy_teacher, photos, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForDepthEstimation

    # A deterministic, learnable degradation (contrast loss) so 20 steps show a clear trend; the
    # random Real-ESRGAN degradation makes single batches too noisy for that (see the resume test).
    monkeypatch.setattr(dd.PresetDegradation, "__call__", lambda self, rgb, rng: 0.5 * rgb + 0.25)
    seen = {}
    real_load = dd.load_teacher

    def spy(spec):
        model, resolved = real_load(spec)
        seen["teacher"] = model
        seen["before"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model, resolved

    monkeypatch.setattr(depth_distill_loop, "load_teacher", spy)  # where train() looks it up
    drawn = []  # (epoch, index) of every training sample: each epoch must bring fresh crops
    real_getitem = ImageFolderPairs.__getitem__

    def record(self, index):
        if self.train:
            drawn.append((self.epoch, int(index)))
        return real_getitem(self, index)

    monkeypatch.setattr(ImageFolderPairs, "__getitem__", record)
    out = tmp_path / "run"
    val = tmp_path / "val"
    val.mkdir()
    for i in range(2):
        Image.fromarray((textured(60, 60, seed=10 + i) * 255).astype(np.uint8)).save(val / f"v{i}.jpg")
    rc = dd.main(_args(healthy_teacher, photos, out, "--steps", "20", "--batch-size", "3", "--lr", "1e-4",
                       "--lr-schedule", "constant", "--warmup-steps", "0", "--val-images", str(val),
                       "--val-every", "10", "--save-every", "10"))
    assert rc == 0
    records = common.read_metrics(out / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 21))
    for r in train:
        assert {"step", "loss", "loss_feature", "loss_output", "lr"} <= set(r)
        assert r["loss"] == pytest.approx(r["loss_feature"] + r["loss_output"], rel=1e-5)
        assert r["lr"] == pytest.approx(1e-4)
    assert len(drawn) == 20 * 3 and {e for e, _ in drawn} == set(range(10))  # 2 batches of 3 per epoch
    losses = [r["loss"] for r in train]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    vals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in vals] == [0, 10, 20] and all(r["val_images"] == 2 for r in vals)
    assert vals[-1]["val_loss"] < vals[0]["val_loss"] and vals[-1]["val_absrel"] >= 0

    # Teacher: frozen and bitwise unchanged. Student: changed.
    teacher = seen["teacher"]
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    after = teacher.state_dict()
    assert all(torch.equal(seen["before"][k], after[k]) for k in after)
    student = AutoModelForDepthEstimation.from_pretrained(out / "final")
    teacher_file = load_file(healthy_teacher / "model.safetensors")
    final_file = load_file(out / "final" / "model.safetensors")
    assert teacher_file.keys() == final_file.keys()
    changed = [k for k in final_file if not torch.equal(final_file[k], teacher_file[k])]
    assert len(changed) > len(final_file) // 2
    assert (out / "final" / "preprocessor_config.json").is_file()
    x = torch.rand(1, 3, CROP, CROP)
    with torch.no_grad():
        assert student(pixel_values=x).predicted_depth.shape == (1, CROP, CROP)
    assert [s for s, _ in common.list_checkpoints(out)] == [10, 20]
    ckpt = out / "checkpoint-20"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "state" / "optimizer.bin").is_file()
    assert not list((ckpt / "state").glob("model*.safetensors"))  # weights stored once, beside the state
    info = json.loads((out / "run_info.json").read_text())
    assert info["images"] == 6 and info["skipped_images"] == 1 and info["skipped"][0].endswith("broken.jpg")


def test_resume_is_exact(tiny_depth_model, photos, tmp_path, caplog):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = _args(tiny_depth_model, photos, out, "--steps", "10", "--save-every", "5", "--batch-size", "2",
                 "--grad-accum", "2", "--lr", "1e-4", "--warmup-steps", "2")
    assert dd.main(args) == 0
    uninterrupted = _losses(out)
    final_a = load_file(out / "final" / "model.safetensors")
    assert sorted(uninterrupted) == list(range(1, 11))
    # Simulate a crash while checkpoint-10 was being written, and a stale temporary folder.
    (out / "checkpoint-10" / common.COMPLETE_MARKER).unlink()
    (out / "checkpoint-15.tmp" / "state").mkdir(parents=True)
    assert common.last_checkpoint(out)[0] == 5

    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    with caplog.at_level(logging.INFO, logger="magicbokeh"):
        assert dd.main(args) == 0
    assert "resuming from" in caplog.text and "checkpoint-5" in caplog.text
    resumed = _losses(out)
    steps = [r["step"] for r in common.read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 11))  # lines 6-10 of the interrupted run were replaced, not duplicated
    for step in range(6, 11):
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-9)
    final_b = load_file(out / "final" / "model.safetensors")
    assert all(torch.allclose(final_a[k], final_b[k], rtol=1e-5, atol=1e-8) for k in final_a)
    assert not (out / "checkpoint-15.tmp").exists()
    assert common.is_complete_checkpoint(out / "checkpoint-10")


def test_bad_inputs_exit_2_with_one_line(tiny_depth_model, photos, tmp_path, capsys):
    cases = [
        (["--teacher", str(tmp_path / "no-such-teacher")], "no such file or folder"),
        (["--teacher", str(photos)], "cannot load the teacher"),
        (["--teacher", str(tiny_depth_model), "--crop", "60"], "multiple of the patch size 14"),
        (["--teacher", str(tiny_depth_model), "--crop", "28"], "too small"),
        (["--teacher", str(tiny_depth_model), "--images", str(tmp_path / "nothing")], "no such folder"),
        (["--teacher", str(tiny_depth_model), "--batch-size", "8"], "lower --batch-size"),
    ]
    for extra, message in cases:
        argv = ["--images", str(photos), "--output", str(tmp_path / "out"), "--crop", str(CROP), "--num-workers", "0",
                "--steps", "1"]
        rc = dd.main(argv + extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, extra
        assert err[-1].startswith("error: ") and message in err[-1], (extra, err)
