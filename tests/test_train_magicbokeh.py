"""MagicBokeh trainer: per-phase parameter sets, phase inputs, loss, exact resume, export → backend.

CPU, tiny random models, data generated in the session; no network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_fixtures import scene, tiny_assets  # noqa: F401

from magicbokeh.errors import MagicBokehError
from magicbokeh.train import magicbokeh as trainer_mod
from magicbokeh.train.common import read_metrics
from magicbokeh.train.magicbokeh_config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "train_tiny.yaml"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from more; a busy 2-core host loses a lot
    for var in ("MAGICBOKEH_BASE", "MAGICBOKEH_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """``--config configs/train_tiny.yaml --output DIR`` alone (base and data created in DIR)."""
    out = tmp_path_factory.mktemp("train-tiny") / "run"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert trainer_mod.main(["--config", str(TINY_CONFIG), "--output", str(out), "-q"]) == 0
    finally:
        torch.set_num_threads(old)
    return out


def _config(run: Path, **overrides) -> Config:
    """The tiny config on the session run's data and base, with ``section.key=value`` overrides."""
    items = [f"base={run / 'tiny-base'}", f"data.bokeh_dir={run / 'data' / 'bokeh'}",
             f"data.sr_dir={run / 'data' / 'bokeh' / 'aif'}", "data.val_samples=1",
             "logging.sample_every=1000", "logging.checkpoint_every=1000"]  # fmt: skip
    items += [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()]
    return load_config(TINY_CONFIG, items)


# ---------------------------------------------------------------------------------------------


def test_tiny_config_alone_runs_every_phase_and_exports(tiny_run):
    records = read_metrics(tiny_run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13))  # log_every 1
    phases = [r["phase"] for r in records]
    assert phases[:4] == ["sr_pretrain"] * 4 and phases[4:] == ["bokeh", "isr"] * 4
    for r in records:
        assert {"loss", "loss_l2", "lr"} <= set(r) and np.isfinite(r["loss"])
    assert records[4]["lr"] == 1e-3 and records[5]["lr"] == 1e-4  # per-phase learning rates
    assert "val_psnr_bokeh" in records[5] and "val_psnr_isr" in records[11]
    assert sorted(p.name for p in (tiny_run / "samples" / "step-0000012").iterdir()) == [
        "bokeh-0.png", "bokeh-1.png", "isr-0.png", "isr-1.png"]
    final = tiny_run / "final"
    assert sorted(p.name for p in final.iterdir()) == sorted(
        ["config.json", "unet_lora.safetensors", "vae_lora.safetensors", "controlnet.safetensors",
         "attention_lora.safetensors"])  # fmt: skip
    cfg = json.loads((final / "config.json").read_text())
    assert (cfg["rank_unet"], cfg["rank_vae"], cfg["rank_attn"]) == (4, 4, 8)
    assert cfg["base"]["relative_to_export"] == "../tiny-base"
    # model weights are safetensors, and nothing anywhere in the run folder is a pickle
    pickles = [p for p in tiny_run.rglob("*") if p.suffix in (".pkl", ".pt", ".pth", ".bin", ".ckpt")]
    assert pickles == []


def test_unknown_config_key_fails_before_training_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CONFIG.read_text().replace("  lr_bokeh:", "  lr_bokhe:"))
    with pytest.raises(MagicBokehError, match=r"optim\.lr_bokhe"):
        load_config(bad)
    with pytest.raises(MagicBokehError, match=r"'train\.batchsize'"):
        load_config(TINY_CONFIG, ["train.batchsize=2"])
    out = tmp_path / "run"
    assert trainer_mod.main(["--config", str(TINY_CONFIG), "--output", str(out), "schedule.max_step=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "schedule.max_step" in err[0]
    assert not out.exists()  # failed before anything was built
    with pytest.raises(MagicBokehError, match="no training data"):  # the paper config needs data folders
        load_config(REPO / "configs" / "train_magicbokeh.yaml").validate()
    with pytest.raises(MagicBokehError, match=r"train\.mixed_precision='fp8'"):
        load_config(TINY_CONFIG, ["train.mixed_precision=fp8"]).validate()


@pytest.mark.parametrize(
    "phase, schedule",
    [("sr_pretrain", dict(schedule__sr_pretrain_steps=1)),
     ("bokeh", dict(schedule__sr_pretrain_steps=0)),
     ("isr", dict(schedule__sr_pretrain_steps=0, schedule__bokeh_steps=0))],
)  # fmt: skip
def test_each_phase_changes_exactly_its_parameters(tiny_run, tiny_assets, tmp_path, phase, schedule):
    from magicbokeh.diffusion.sources import fetch_base, resolve_base
    from magicbokeh.train.magicbokeh_model import build_net, phase_parameters, read_init

    # Fine-tune the synthetic lora.pkl: every adapter is non-zero, so every trained tensor gets a gradient.
    config = _config(tiny_run, base=tiny_assets.base_dir, init_from=tiny_assets.ckpt_path, schedule__max_steps=1,
                     optim__weight_decay=0.0, **schedule)  # fmt: skip
    trainer = trainer_mod.Trainer(config, tmp_path / "run", progress=False)
    trainer.run()
    before, _ = build_net(config, fetch_base(resolve_base(str(tiny_assets.base_dir))), init=read_init(tiny_assets.ckpt_path))
    expected = set(phase_parameters(before)[phase])
    after = trainer.net.state_dict()
    changed = {k for k, v in before.state_dict().items() if not torch.equal(v, after[k])}
    assert changed == expected
    sizes = {"sr_pretrain": ("vae.", "unet.conv_in.base_layer.weight", "lora_A.default_decoder"),
             "bokeh": ("controlnet.down_blocks.0", ".processor.to_q_lora.0.weight"),
             "isr": ("lora_B.default_encoder",)}[phase]
    for fragment in sizes:  # the sets are the intended ones, not just consistent
        assert any(fragment in k for k in changed), fragment
    if phase != "sr_pretrain":
        assert not any(k.startswith("vae.") or "conv_in.base_layer" in k for k in changed)
    if phase != "bokeh":
        assert not any(k.startswith("controlnet.") or ".processor." in k for k in changed)


def test_bokeh_phase_uses_mask_and_defocus_isr_zero_map_and_no_mask(tiny_run, tmp_path, monkeypatch):
    from magicbokeh.diffusion.attention import FocusAttnProcessor
    from magicbokeh.diffusion.models import FocusControlNet

    calls: list[dict] = []
    orig_proc, orig_cn = FocusAttnProcessor.__call__, FocusControlNet.forward

    def spy_proc(self, attn, hidden_states, *args, focus_mask=None, **kw):
        calls[-1]["masks"].append(focus_mask)
        return orig_proc(self, attn, hidden_states, *args, focus_mask=focus_mask, **kw)

    def spy_cn(self, sample, timestep, controlnet_cond):
        calls.append({"cond": controlnet_cond.detach().clone(), "masks": []})
        return orig_cn(self, sample, timestep, controlnet_cond)

    monkeypatch.setattr(FocusAttnProcessor, "__call__", spy_proc)
    monkeypatch.setattr(FocusControlNet, "forward", spy_cn)
    config = _config(tiny_run, schedule__max_steps=3, schedule__sr_pretrain_steps=1, data__val_samples=0)
    trainer_mod.Trainer(config, tmp_path / "run", progress=False).run()
    assert len(calls) == 3  # one forward per step: sr_pretrain, bokeh, isr
    n_focus = 4  # focus-masked layers of the tiny UNet
    for call, phase in zip(calls, ("sr_pretrain", "bokeh", "isr")):
        assert len(call["masks"]) == n_focus
        cond = call["cond"]
        if phase == "bokeh":
            defocus = (cond[:, 0] + 1) / 2
            assert float(defocus.max()) > 0.1  # a real defocus map, with out-of-focus regions
            for mask in call["masks"]:
                assert mask is not None
                top = mask.token_classes(16 * 16).reshape(-1, 16, 16)
                expected = (defocus <= 0.1 + 1e-6)[:, ::4, ::4]  # in_focus_mask, top-left sampled
                assert torch.equal(top, expected)
        else:
            assert torch.equal(cond, torch.full_like(cond, -1.0))  # all-zero defocus map
            assert all(mask is None for mask in call["masks"])  # no restriction


def test_loss_decreases_on_generated_data(tiny_run, tmp_path):
    for phase, sched in (("sr_pretrain", dict(schedule__sr_pretrain_steps=8)),
                         ("bokeh", dict(schedule__sr_pretrain_steps=0, schedule__isr_steps=0))):  # fmt: skip
        config = _config(tiny_run, schedule__max_steps=8, data__val_samples=0, **sched)
        trainer_mod.Trainer(config, tmp_path / phase, progress=False).run()
        losses = [r["loss"] for r in read_metrics(tmp_path / phase / "metrics.jsonl")]
        assert len(losses) == 8
        assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), (phase, losses)


def test_resume_reproduces_the_uninterrupted_run(tiny_run, tmp_path):
    kw = dict(schedule__max_steps=6, schedule__sr_pretrain_steps=2, logging__checkpoint_every=3,
              train__ema="true", data__val_samples=0)  # fmt: skip
    trainer_mod.Trainer(_config(tiny_run, **kw), tmp_path / "a", progress=False).run()
    b = tmp_path / "b"
    trainer_mod.Trainer(_config(tiny_run, **{**kw, "schedule__max_steps": 3}), b, progress=False).run()
    # an interruption while saving step 5 left a half-written folder, and a checkpoint-4 without marker
    (b / "checkpoint-5.tmp").mkdir()
    (b / "checkpoint-5.tmp" / "unet_lora.safetensors").write_bytes(b"torn")
    shutil.copytree(b / "checkpoint-3", b / "checkpoint-4")
    (b / "checkpoint-4" / "COMPLETE").unlink()
    result = trainer_mod.Trainer(_config(tiny_run, **kw), b, progress=False).run()
    assert result.resumed_from == 3
    ra, rb = read_metrics(tmp_path / "a" / "metrics.jsonl"), read_metrics(b / "metrics.jsonl")
    assert [r["step"] for r in rb] == list(range(1, 7))
    assert [r["phase"] for r in rb] == ["sr_pretrain", "sr_pretrain", "bokeh", "isr", "bokeh", "isr"]
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]  # bit-identical after resuming
    from safetensors.torch import load_file

    for name in ("unet_lora", "vae_lora", "controlnet", "attention_lora"):  # EMA exports identical too
        fa, fb = load_file(tmp_path / "a" / "final" / f"{name}.safetensors"), load_file(b / "final" / f"{name}.safetensors")
        assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    # resuming with another rank is refused before anything runs
    with pytest.raises(MagicBokehError, match=r"model\.rank_unet=8"):
        trainer_mod.Trainer(_config(tiny_run, **kw, model__rank_unet=8), b, progress=False).run()


def test_out_of_memory_names_the_fix_and_keeps_the_checkpoint(tiny_run, tmp_path, monkeypatch):
    from magicbokeh.train.magicbokeh_model import MagicBokehNet

    orig, seen = MagicBokehNet.forward, []

    def flaky(self, *args):
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return orig(self, *args)

    monkeypatch.setattr(MagicBokehNet, "forward", flaky)
    config = _config(tiny_run, schedule__max_steps=4, logging__checkpoint_every=2, data__val_samples=0)
    with pytest.raises(MagicBokehError, match=r"train\.batch_size.*gradient_checkpointing.*step 2\) is intact"):
        trainer_mod.Trainer(config, tmp_path / "run", progress=False).run()
    assert (tmp_path / "run" / "checkpoint-2" / "COMPLETE").is_file()


def test_export_renders_through_the_cli_with_the_recorded_base(tiny_run, tmp_path, monkeypatch):
    from PIL import Image

    from magicbokeh import cli

    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    img, disp = scene(72, 100)
    photo = tmp_path / "photo.png"
    Image.fromarray((img * 255).round().astype(np.uint8)).save(photo)
    np.save(tmp_path / "disp.npy", disp)
    out = tmp_path / "out.png"
    code = cli.main(["render", str(photo), "-o", str(out), "--backend", "magicbokeh",
                     "--checkpoint", str(tiny_run / "final"), "--depth", str(tmp_path / "disp.npy"),
                     "--focus-disparity", "0.9", "--K", "24", "--device", "cpu", "--dtype", "fp32", "-q"])  # fmt: skip
    assert code == 0
    result = np.asarray(Image.open(out))
    assert result.shape == (72, 100, 3)
    assert np.abs(result.astype(np.float32) / 255 - img).mean() > 0.005  # the trained model changed it


def test_k0_trainer_forward_equals_backend(tiny_run):
    """One code path: the trainer's forward (peft unmerged) and the backend (merged) agree at K = 0."""
    from magicbokeh.diffusion.checkpoint import read_checkpoint
    from magicbokeh.diffusion.loading import clear_loaded_models, load_magicbokeh
    from magicbokeh.diffusion.pipeline import MagicBokehPipeline, tile_noise
    from magicbokeh.diffusion.sources import fetch_base, resolve_base
    from magicbokeh.train.magicbokeh_model import build_net

    final = tiny_run / "final"
    config = load_config(TINY_CONFIG)
    net, _ = build_net(config, fetch_base(resolve_base(str(tiny_run / "tiny-base"))), init=read_checkpoint(final))
    img, _ = scene(64, 64, seed=3)
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None] * 2 - 1
    noise = tile_noise(7, 0, 0, (4, 16, 16))[None]
    with torch.no_grad():
        ours = net(x, torch.zeros(1, 1, 64, 64), None, noise)[0].permute(1, 2, 0).numpy() * 0.5 + 0.5
    clear_loaded_models()
    try:
        model = load_magicbokeh(checkpoint=final, device="cpu", dtype="fp32", attention="sdpa", cache_dir="off")
        assert model.info["base"] == str((tiny_run / "tiny-base").resolve())  # recorded base, no --base
        out = MagicBokehPipeline(model).render(img, np.zeros((64, 64), np.float32), np.ones((64, 64), bool),
                                               seed=7, color_fix="none").image
    finally:
        clear_loaded_models()
    assert np.abs(out - ours).max() < 2e-4
    assert np.abs(out - img).mean() > 0.01  # a real restoration, not the identity


def test_export_records_its_base_and_survives_moving_the_run(tiny_run, tmp_path, monkeypatch):
    from magicbokeh.diffusion.sources import resolve_checkpoint, resolve_sources

    moved = tmp_path / "moved"
    shutil.copytree(tiny_run / "final", moved / "final")
    shutil.copytree(tiny_run / "tiny-base", moved / "tiny-base")
    monkeypatch.setenv("MAGICBOKEH_BASE", str(tmp_path / "elsewhere"))  # the recorded base wins over it
    base, ckpt = resolve_sources(None, moved / "final")
    assert ckpt.local_path == (moved / "final").resolve()
    assert base.local_path == (moved / "tiny-base").resolve()  # found relative to the export
    assert resolve_sources(tiny_run / "tiny-base", moved / "final")[0].local_path == (tiny_run / "tiny-base").resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(MagicBokehError, match="neither lora.pkl nor a trained export"):
        resolve_checkpoint(tmp_path / "empty")


def test_mixed_precision_checkpointing_accumulation_and_ema(tiny_run, tmp_path):
    from magicbokeh.diffusion.checkpoint import read_checkpoint

    config = _config(tiny_run, schedule__max_steps=2, schedule__sr_pretrain_steps=1, train__mixed_precision="bf16",
                     train__gradient_checkpointing="true", train__gradient_accumulation_steps=2,
                     train__batch_size=1, train__ema="true", data__val_samples=1)  # fmt: skip
    trainer = trainer_mod.Trainer(config, tmp_path / "run", progress=False)
    trainer.run()
    dtypes = {n: p.dtype for n, p in trainer.net.named_parameters()}
    assert dtypes["unet.conv_out.base_layer.weight"] == torch.bfloat16  # frozen base: autocast dtype
    assert dtypes["unet.conv_in.base_layer.weight"] == torch.float32  # trained: fp32
    assert all(dtypes[n] == torch.float32 for n in dtypes if "lora_" in n or n.startswith("controlnet."))
    assert all(np.isfinite(r["loss"]) for r in read_metrics(tmp_path / "run" / "metrics.jsonl"))
    final, raw = read_checkpoint(tmp_path / "run" / "final"), read_checkpoint(tmp_path / "run" / "checkpoint-2")
    key = next(k for k in raw.state_dict_unet if "lora_B.default_decoder" in k)
    assert not torch.equal(final.state_dict_unet[key], raw.state_dict_unet[key])  # final/ holds the EMA
    ema = read_checkpoint(tmp_path / "run" / "checkpoint-2" / "ema")
    assert torch.equal(final.state_dict_unet[key], ema.state_dict_unet[key])
