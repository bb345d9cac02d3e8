"""Train MagicBokeh: SR pre-training, then alternating bokeh and Real-ISR steps (paper §"alternative
training strategy"), on accelerate.

Usage (one device, or the same arguments after ``accelerate launch -m``)::

    python -m magicbokeh.train.magicbokeh --config configs/train_magicbokeh.yaml --output runs/mb \\
        [--base ID|DIR] [--max-steps N] [section.key=value ...]

Phases (``Config.phase_at``): ``sr_pretrain`` for ``schedule.sr_pretrain_steps`` steps, then cycles of
``schedule.bokeh_steps`` bokeh steps and ``schedule.isr_steps`` Real-ISR steps. Each phase has its own
AdamW (learning rates 5e-5 / 5e-5 / 5e-6) over its own parameters (``magicbokeh_model.PHASE_PARTS``);
everything else is frozen and stays bitwise unchanged. The bokeh phase feeds the defocus map
``|d − f|·K/32`` and the in-focus mask; the Real-ISR and SR phases an all-zero defocus map and no
attention mask. Loss ``l2_weight · MSE + lpips_weight · LPIPS`` in pixel space (LPIPS only when the
``lpips`` package is installed; otherwise L2 only, logged once).

Output folder::

    DIR/train_config.yaml     the resolved configuration
    DIR/metrics.jsonl         one JSON line per logged step: step, phase, loss, loss_l2[, loss_lpips], lr, ...
    DIR/samples/step-N/       validation renders (input | output | target PNGs), PSNR in metrics.jsonl
    DIR/checkpoint-N/         trained weights (safetensors + config.json, loadable with --checkpoint)
                              + resume/ (optimizer states as safetensors, trainer_state.json) [+ ema/]
    DIR/final/                the exported weights (EMA weights when train.ema is on)

A rerun of the same command resumes from the last complete checkpoint (``train.common``); the
losses after resuming equal those of an uninterrupted run, because every sample, crop, degradation
and posterior noise is a function of (seed, step) only. No pickle is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..entrypoint import run_command
from ..errors import MagicBokehError
from ..publish import publish_folder, publish_text
from .magicbokeh_config import PHASE_DATA, PHASES, TINY_BASE, Config, load_config

logger = logging.getLogger("magicbokeh.train.magicbokeh")

TINY_BASE_DIR = "tiny-base"
RESUME_DIR = "resume"
EMA_DIR = "ema"
FINAL_DIR = "final"

#: The tiny SD2.1-shaped base of ``base: tiny`` (stock layout, with mid block and cross-attention).
TINY_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 32, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(2, 2, 4), cross_attention_dim=32, layers_per_block=1,
    use_linear_projection=True, norm_num_groups=8,
)  # fmt: skip
TINY_VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=(16, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=0.18215,
)  # fmt: skip
#: SD2.1-base ``scheduler_config.json`` (DDPM arithmetic at t = 999).
SD21_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}  # fmt: skip


@dataclass
class TrainResult:
    """What a run produced."""

    output: Path
    final: Path | None
    step: int
    resumed_from: int | None


def make_tiny_base(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random SD2.1-shaped diffusers folder (``unet/``, ``vae/``, ``scheduler/``), once."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if (folder / "scheduler" / "scheduler_config.json").is_file():
        return folder
    with publish_folder(folder, if_exists="keep") as tmp:  # concurrent makers build identical copies
        torch.manual_seed(seed)
        UNet2DConditionModel(**TINY_UNET).save_pretrained(tmp / "unet")
        torch.manual_seed(seed + 1)
        AutoencoderKL(**TINY_VAE).save_pretrained(tmp / "vae")
        (tmp / "scheduler").mkdir(parents=True)
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_SCHEDULER, indent=1))
    return folder


def _seed_int(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def posterior_noise(seed: int, step: int, micro: int, rank: int, shape: tuple[int, ...]):
    """The VAE posterior noise of one micro-batch: a function of (seed, step, micro, rank) only."""
    import torch

    gen = torch.Generator().manual_seed(_seed_int(seed, 0x4E01, step, micro, rank))
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def counts_before(config: Config, step: int) -> tuple[dict[str, int], dict[str, int]]:
    """(steps per phase, steps per data stream) before optimizer step ``step``."""
    phases = {p: 0 for p in PHASES}
    for s in range(step):
        phases[config.phase_at(s)] += 1
    streams = {"sr": phases["sr_pretrain"] + phases["isr"], "bokeh": phases["bokeh"]}
    return phases, streams


class Trainer:
    """One training run (see the module docstring). ``run()`` trains and exports."""

    def __init__(self, config: Config, output: str | Path, *, progress: bool = True):
        config.validate()
        self.config = config
        self.output = Path(output).resolve()
        self.progress = progress

    # -- setup ------------------------------------------------------------------------------------

    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        t = self.config.train
        # phases toggle requires_grad: parameters a step does not train are "unused" for DDP
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        acc = Accelerator(mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
                          kwargs_handlers=[ddp])
        if acc.device.type == "cpu" and t.mixed_precision == "fp16":
            raise MagicBokehError("train.mixed_precision=fp16 needs a GPU; use bf16 or no on CPU.")
        return acc

    def _base(self, acc):
        from ..diffusion.sources import fetch_base, resolve_base

        spec = self.config.base
        if spec == TINY_BASE:
            folder = self.output / TINY_BASE_DIR
            if acc.is_main_process:
                make_tiny_base(folder, self.config.train.seed)
            acc.wait_for_everyone()
            spec = str(folder)
        source = resolve_base(spec)
        if acc.is_main_process:  # download once, then the others read the cache
            files = fetch_base(source)
        acc.wait_for_everyone()
        if not acc.is_main_process:
            files = fetch_base(source, local_files_only=True)
        return source, files

    def _data(self, acc):
        from .magicbokeh_data import BokehPairs, DrawDataset, SRPairs, generate_synthetic, make_degrade_fn

        c, d = self.config, self.config.data
        sr_dir, bokeh_dir = d.sr_dir, d.bokeh_dir
        if sr_dir is None or bokeh_dir is None:
            if d.generate <= 0:
                raise MagicBokehError("set data.sr_dir and data.bokeh_dir, or data.generate=N for synthetic pairs.")
            gen_dir = self.output / "data" / "bokeh"
            if acc.is_main_process:
                generate_synthetic(gen_dir, d.generate, c.train.seed, max(d.resolution, 32))
            acc.wait_for_everyone()
            bokeh_dir = bokeh_dir or str(gen_dir)
            sr_dir = sr_dir or str(gen_dir / "aif")
        degrade = make_degrade_fn(d.degradation_preset, d.degradation_scale)
        seed = c.train.seed
        bokeh = BokehPairs(bokeh_dir, resolution=d.resolution, bokeh_input=d.bokeh_input, degrade_fn=degrade,
                           quantize=d.quantize_disparity, seed=seed)
        sr = SRPairs(sr_dir, resolution=d.resolution, degrade_fn=degrade, seed=seed)
        val_bokeh = BokehPairs(d.val_bokeh_dir or bokeh_dir, resolution=d.resolution, bokeh_input=d.bokeh_input,
                               degrade_fn=degrade, quantize=d.quantize_disparity, seed=seed, train=False)
        val_sr = SRPairs(d.val_sr_dir or sr_dir, resolution=d.resolution, degrade_fn=degrade, seed=seed, train=False)
        datasets = {"sr": DrawDataset(sr, seed=seed, stream="sr"), "bokeh": DrawDataset(bokeh, seed=seed, stream="bokeh")}
        n = d.val_samples
        val = {
            "bokeh": [val_bokeh.item(i, -1) for i in range(min(n, len(val_bokeh)))],
            "isr": [val_sr.item(i, -1) for i in range(min(n, len(val_sr)))],
        }
        logger.info("data: %d SR photos (%s), %d bokeh pairs (%s)", len(sr), sr_dir, len(bokeh), bokeh_dir)
        return datasets, val

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        acc = self._accelerator()
        try:
            return self._run(acc)
        finally:
            if acc.num_processes == 1:  # accelerate's state is a per-process singleton: let the next
                _reset_accelerate_state()  # in-process run choose its own precision / accumulation

    def _run(self, acc) -> TrainResult:
        import torch

        from ..diffusion.checkpoint import read_trained_folder
        from ..diffusion.devices import is_out_of_memory
        from .common import MetricsLog, last_checkpoint, remove_stale_temporaries
        from .magicbokeh_data import stream_loader
        from .magicbokeh_model import (
            build_net,
            cast_frozen,
            enable_gradient_checkpointing,
            phase_parameters,
            read_init,
            set_trainable,
            trainable_parameters,
        )

        c = self.config
        t = c.train
        main = acc.is_main_process
        self.output.mkdir(parents=True, exist_ok=True)
        if main:
            remove_stale_temporaries(self.output)
        acc.wait_for_everyone()

        # 1. resume or start: the last complete checkpoint wins over init_from
        last = last_checkpoint(self.output)
        if last is not None:
            start, ckpt_dir = last
            state = self._check_resume(ckpt_dir)
            init = read_trained_folder(ckpt_dir)
            logger.info("resuming from %s (step %d)", ckpt_dir, start)
        else:
            start, ckpt_dir, state = 0, None, None
            init = read_init(c.init_from) if c.init_from else None
        base_src, base_files = self._base(acc)
        if main:
            import yaml

            publish_text(self.output / "train_config.yaml", yaml.safe_dump(c.to_dict(), sort_keys=False))

        # 2. network (the backend's architecture, peft adapters separate), optimizers, EMA
        torch.manual_seed(t.seed)  # adapter and ControlNet-embedding init (overwritten on resume)
        net, adapters = build_net(c, base_files, init=init)
        self.net = net
        self.adapters, self.base_src = adapters, base_src
        if t.gradient_checkpointing:
            enable_gradient_checkpointing(net)
        by_phase = phase_parameters(net)
        union = trainable_parameters(net)
        set_trainable(net, set(union))  # DDP registers every parameter any phase trains
        if t.mixed_precision != "no":  # frozen base weights in the autocast dtype: half the memory
            cast_frozen(net, set(union), torch.bfloat16 if t.mixed_precision == "bf16" else torch.float16)
        betas = tuple(c.optim.betas)
        optimizers = {
            p: torch.optim.AdamW(list(by_phase[p].values()), lr=c.lr_for(p), betas=betas, eps=c.optim.eps,
                                 weight_decay=c.optim.weight_decay)
            for p in PHASES
        }
        self.phase_names = {p: list(by_phase[p]) for p in PHASES}
        ema = {n: p.detach().clone() for n, p in union.items()} if t.ema else None
        if state is not None and ema is not None:
            if (ckpt_dir / EMA_DIR).is_dir():
                ema = self._ema_from(net, read_trained_folder(ckpt_dir / EMA_DIR))
            else:
                logger.warning("%s has no EMA weights (train.ema was off); the EMA starts from its weights", ckpt_dir)
        for phase in PHASES:
            logger.info("phase %s trains %d tensors, %d parameters", phase, len(by_phase[phase]),
                        sum(p.numel() for p in by_phase[phase].values()))
        prepared = acc.prepare(net, *[optimizers[p] for p in PHASES])
        model, opts = prepared[0], dict(zip(PHASES, prepared[1:]))
        if state is not None:
            self._load_optimizers(opts, ckpt_dir / RESUME_DIR)
            if acc.scaler is not None and state.get("scaler"):
                acc.scaler.load_state_dict(state["scaler"])
        raw = acc.unwrap_model(model)
        params = dict(raw.named_parameters())
        if ema is not None:
            ema = {n: v.to(params[n].device) for n, v in ema.items()}

        # 3. data streams (each endless, starting where the schedule left it) and the loss
        datasets, val = self._data(acc)
        phase_counts, stream_counts = counts_before(c, start)
        loaders: dict[str, Any] = {}

        def batches(stream: str):
            if stream not in loaders:
                loaders[stream] = stream_loader(
                    datasets[stream], stream_counts[stream], batch=t.batch_size,
                    accumulation=t.gradient_accumulation_steps, rank=acc.process_index,
                    world=acc.num_processes, workers=t.num_workers,
                )  # fmt: skip
            return loaders[stream]

        lpips_fn = self._lpips(acc.device)
        metrics = MetricsLog(self.output / "metrics.jsonl", resume_step=start if start else None) if main else None
        self.metrics_path = self.output / "metrics.jsonl"

        from tqdm import tqdm

        bar = tqdm(total=c.schedule.max_steps, initial=start, desc="train", unit="step", file=sys.stderr,
                   disable=not (main and self.progress), dynamic_ncols=True)
        step = start
        lat = raw.tile_size // raw.consts.vae_scale_factor
        noise_shape = (t.batch_size, raw.latent_channels, lat, lat)
        if c.data.resolution != raw.tile_size:
            logger.warning("data.resolution=%d differs from the model tile %d px; the backend renders %d px tiles",
                           c.data.resolution, raw.tile_size, raw.tile_size)
            lat = c.data.resolution // raw.consts.vae_scale_factor
            noise_shape = (t.batch_size, raw.latent_channels, lat, lat)
        last_saved = start if last is not None else None
        # 4. optimizer steps
        while step < c.schedule.max_steps:
            phase = c.phase_at(step)
            stream = PHASE_DATA[phase]
            t0 = time.perf_counter()
            set_trainable(raw, set(self.phase_names[phase]))
            opt = opts[phase]
            k = phase_counts[phase]
            lr = c.lr_for(phase) * (min(1.0, (k + 1) / c.optim.warmup_steps) if c.optim.warmup_steps else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            parts = {"l2": 0.0, "lpips": 0.0}
            try:
                for micro in range(t.gradient_accumulation_steps):
                    batch = next(batches(stream))
                    with acc.accumulate(model):
                        x = batch["input"].to(acc.device) * 2 - 1
                        target = batch["target"].to(acc.device) * 2 - 1
                        if phase == "bokeh":
                            defocus, in_focus = batch["defocus"].to(acc.device), batch["in_focus"].to(acc.device)
                        else:  # Real-ISR / SR: all-zero defocus map, no attention restriction
                            defocus, in_focus = torch.zeros_like(batch["defocus"]).to(acc.device), None
                        noise = posterior_noise(t.seed, step, micro, acc.process_index, noise_shape).to(acc.device)
                        pred = model(x, defocus, in_focus, noise)
                        loss, l2, lp = self._loss(pred, target, lpips_fn)
                        acc.backward(loss)
                        if acc.sync_gradients and c.optim.max_grad_norm > 0:
                            acc.clip_grad_norm_([params[n] for n in self.phase_names[phase]], c.optim.max_grad_norm)
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                    parts["l2"] += float(l2) / t.gradient_accumulation_steps
                    parts["lpips"] += float(lp) / t.gradient_accumulation_steps
            except Exception as exc:
                if isinstance(exc, MemoryError) or is_out_of_memory(exc):
                    kept = f"the last complete checkpoint (step {last_saved}) is intact; " if last_saved else ""
                    raise MagicBokehError(
                        f"out of memory at step {step + 1} ({phase}, batch {t.batch_size} at {c.data.resolution} px): "
                        "lower train.batch_size (raise train.gradient_accumulation_steps to keep the effective "
                        "batch), set train.gradient_checkpointing=true and train.mixed_precision=bf16; "
                        f"{kept}rerun the same command to resume."
                    ) from exc
                raise
            if ema is not None:
                with torch.no_grad():
                    for n in self.phase_names[phase]:
                        ema[n].mul_(t.ema_decay).add_(params[n].detach(), alpha=1 - t.ema_decay)
            phase_counts[phase] += 1
            stream_counts[stream] += 1
            step += 1
            set_trainable(raw, set(union))
            # 5. log, validate, checkpoint
            losses = torch.tensor([parts["l2"], parts["lpips"]], device=acc.device)
            losses = acc.reduce(losses, reduction="mean") if acc.num_processes > 1 else losses
            l2_v, lp_v = (float(v) for v in losses)
            total = c.loss.l2_weight * l2_v + (c.loss.lpips_weight * lp_v if lpips_fn is not None else 0.0)
            record: dict[str, Any] = {"step": step, "phase": phase, "loss": total, "loss_l2": l2_v}
            if lpips_fn is not None:
                record["loss_lpips"] = lp_v
            record.update(lr=lr, step_time_s=round(time.perf_counter() - t0, 4))
            do_val = step % c.logging.sample_every == 0 or step == c.schedule.max_steps
            if do_val:
                acc.wait_for_everyone()
                if main:
                    record.update(self._validate(raw, val, step, acc, lpips_fn))
                acc.wait_for_everyone()
            if main and (step % c.logging.log_every == 0 or do_val):
                metrics.write(record)
            bar.update(1)
            bar.set_postfix(phase=phase, loss=f"{total:.4f}")
            if step % c.logging.checkpoint_every == 0 or step == c.schedule.max_steps:
                self._save_checkpoint(acc, raw, opts, ema, step, phase)
                last_saved = step
        bar.close()

        # 6. export
        final = None
        if main:
            final = self._export_final(raw, ema, step)
        acc.wait_for_everyone()
        acc.end_training()
        return TrainResult(self.output, final, step, start if last is not None else None)

    # -- pieces -----------------------------------------------------------------------------------

    def _loss(self, pred, target, lpips_fn):
        import torch.nn.functional as F

        l2 = F.mse_loss(pred.float(), target.float())
        loss = self.config.loss.l2_weight * l2
        lp = l2.new_zeros(())
        if lpips_fn is not None and self.config.loss.lpips_weight > 0:
            lp = lpips_fn(pred.float(), target.float()).mean()
            loss = loss + self.config.loss.lpips_weight * lp
        return loss, l2.detach(), lp.detach()

    def _lpips(self, device):
        if self.config.loss.lpips_weight <= 0:
            return None
        try:
            import lpips  # optional; needs torchvision and downloads VGG weights on first use
        except ImportError:
            logger.warning("LPIPS unavailable (pip install lpips); training with the L2 loss only "
                           "(loss.lpips_weight=%g ignored).", self.config.loss.lpips_weight)
            return None
        fn = lpips.LPIPS(net="vgg", verbose=False).to(device).eval()
        fn.requires_grad_(False)
        return fn

    def _validate(self, raw, val, step: int, acc, lpips_fn) -> dict[str, float]:
        """Render the fixed validation set; PNGs (input | output | target) and PSNR (+ LPIPS)."""
        import torch

        from ..images import save_png

        out_dir = self.output / "samples" / f"step-{step:07d}"
        result: dict[str, float] = {}
        lat = self.config.data.resolution // raw.consts.vae_scale_factor
        with torch.no_grad(), acc.autocast():
            for kind, items in val.items():
                psnrs, lps = [], []
                for i, item in enumerate(items):
                    x = item["input"][None].to(acc.device) * 2 - 1
                    defocus = item["defocus"][None].to(acc.device)
                    in_focus = item["in_focus"][None].to(acc.device) if kind == "bokeh" else None
                    if kind != "bokeh":
                        defocus = torch.zeros_like(defocus)
                    noise = posterior_noise(self.config.train.seed, -1, i, 0, (1, raw.latent_channels, lat, lat))
                    pred = raw(x, defocus, in_focus, noise.to(acc.device)).float()
                    out01 = (pred[0] * 0.5 + 0.5).clamp(0, 1).cpu()
                    target = item["target"]
                    mse = float(((out01 - target) ** 2).mean())
                    psnrs.append(10 * math.log10(1.0 / max(mse, 1e-12)))
                    if lpips_fn is not None:
                        lps.append(float(lpips_fn(pred, target[None].to(acc.device) * 2 - 1).mean()))
                    grid = torch.cat([item["input"], out01, target], dim=2).permute(1, 2, 0).numpy()
                    save_png(out_dir / f"{kind}-{i}.png", grid)
                if psnrs:
                    result[f"val_psnr_{kind}"] = float(np.mean(psnrs))
                if lps:
                    result[f"val_lpips_{kind}"] = float(np.mean(lps))
        return result

    def _export_extra(self, folder: Path, step: int, phase: str | None) -> dict[str, Any]:
        base = {"source": self.base_src.describe(), "relative_to_export": None}
        if self.base_src.local_path is not None:
            try:
                self.base_src.local_path.relative_to(self.output)
                base["relative_to_export"] = os.path.relpath(self.base_src.local_path, folder)
            except ValueError:
                pass
        return {"base": base, "training": {"step": step, "phase": phase, "ema": self.config.train.ema,
                                           "config": self.config.to_dict()}}

    def _write_weights(self, folder: Path, raw, overrides, step: int, phase: str | None) -> None:
        from ..diffusion.checkpoint import write_trained_folder
        from .magicbokeh_model import export_checkpoint

        extra = self._export_extra(folder, step, phase)
        extra["unet_config"] = dict(raw.unet.config)
        extra["vae_config"] = dict(raw.vae.config)
        write_trained_folder(folder, export_checkpoint(raw, self.adapters, overrides), extra=extra)

    def _save_checkpoint(self, acc, raw, opts, ema, step: int, phase: str) -> None:
        from safetensors.torch import save_file

        from .common import atomic_checkpoint, prune_checkpoints

        main = acc.is_main_process
        with atomic_checkpoint(self.output, step, is_main_process=main, wait=acc.wait_for_everyone) as tmp:
            if main:
                self._write_weights(tmp, raw, None, step, phase)
                if ema is not None:
                    self._write_weights(tmp / EMA_DIR, raw, ema, step, phase)
                resume = tmp / RESUME_DIR
                resume.mkdir()
                for p, opt in opts.items():
                    sd = opt.state_dict()
                    names = self.phase_names[p]
                    tensors = {}
                    for idx, entry in sd["state"].items():
                        for key, value in entry.items():
                            tensors[f"{names[idx]}/{key}"] = value.detach().cpu().contiguous()
                    groups = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
                    save_file(tensors, str(resume / f"optimizer-{p}.safetensors"))
                    (resume / f"optimizer-{p}.json").write_text(json.dumps({"names": names, "param_groups": groups}))
                scaler = acc.scaler.state_dict() if acc.scaler is not None else None
                state = {"step": step, "phase": phase, "world_size": acc.num_processes, "scaler": scaler,
                         "ranks": self._ranks(), "config": self.config.to_dict()}
                (resume / "trainer_state.json").write_text(json.dumps(state, indent=1))
        if main:
            prune_checkpoints(self.output, self.config.logging.keep_checkpoints)

    def _export_final(self, raw, ema, step: int) -> Path:
        final = self.output / FINAL_DIR
        with publish_folder(final) as tmp:
            self._write_weights(tmp, raw, ema, step, None)
        logger.info("exported %s (step %d%s)", final, step, ", EMA weights" if ema is not None else "")
        return final

    def _ranks(self) -> dict[str, Any]:
        m = self.config.model
        return {"rank_unet": m.rank_unet, "rank_vae": m.rank_vae, "rank_attn": m.rank_attn}

    def _check_resume(self, ckpt_dir: Path) -> dict[str, Any]:
        path = ckpt_dir / RESUME_DIR / "trainer_state.json"
        if not path.is_file():
            raise MagicBokehError(f"{ckpt_dir} has no {RESUME_DIR}/trainer_state.json; it cannot be resumed "
                                  "(use a new --output folder, or init_from to fine-tune it).")
        state = json.loads(path.read_text())
        saved = state.get("ranks", {})
        for key, value in self._ranks().items():
            if saved.get(key) != value:
                raise MagicBokehError(
                    f"{ckpt_dir} was trained with model.{key}={saved.get(key)} but the config sets "
                    f"model.{key}={value}; resume with the same ranks or use a new --output folder."
                )
        old_cfg = state.get("config", {})
        for section, key in (("model", "conditioning_embedding_out_channels"), ("data", "resolution")):
            before = old_cfg.get(section, {}).get(key)
            now = getattr(getattr(self.config, section), key)
            if before != now:
                raise MagicBokehError(f"{ckpt_dir} was trained with {section}.{key}={before} but the config "
                                      f"sets {now}; resume with the same value or use a new --output folder.")
        if old_cfg.get("base") != self.config.base:
            logger.warning("resuming %s with base %s (it was trained on %s)", ckpt_dir, self.config.base, old_cfg.get("base"))
        return state

    def _load_optimizers(self, opts, folder: Path) -> None:
        from safetensors.torch import load_file

        for p, opt in opts.items():
            meta = json.loads((folder / f"optimizer-{p}.json").read_text())
            if meta["names"] != self.phase_names[p]:
                raise MagicBokehError(f"{folder}: the {p} optimizer was saved for other parameters; "
                                      "the checkpoint does not match this configuration.")
            tensors = load_file(str(folder / f"optimizer-{p}.safetensors"))
            index = {n: i for i, n in enumerate(meta["names"])}
            state: dict[int, dict[str, Any]] = {}
            for key, value in tensors.items():
                name, _, field_name = key.rpartition("/")
                state.setdefault(index[name], {})[field_name] = value
            groups = [{**g, "params": list(range(len(meta["names"])))} for g in meta["param_groups"]]
            for g in groups:
                if "betas" in g:
                    g["betas"] = tuple(g["betas"])
            opt.load_state_dict({"state": state, "param_groups": groups})

    def _ema_from(self, net, ckpt) -> dict[str, Any]:
        from .magicbokeh_model import trained_tensors

        params = dict(net.named_parameters())
        return {n: v.to(params[n].dtype).clone() for n, v in trained_tensors(net, ckpt, source="ema").items()}


def _reset_accelerate_state() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def train(config: Config, output: str | Path, *, progress: bool = True) -> TrainResult:
    """Train (or resume) into ``output``; see :class:`Trainer`."""
    return Trainer(config, output, progress=progress).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m magicbokeh.train.magicbokeh",
        description="Train MagicBokeh (SR pre-training, then alternating bokeh / Real-ISR steps).",
    )
    parser.add_argument("--config", required=True, help="YAML config (configs/train_magicbokeh.yaml, configs/train_tiny.yaml)")
    parser.add_argument("--output", required=True, help="run folder (checkpoints, metrics.jsonl, samples, final/)")
    parser.add_argument("--base", help="SD2.1-base repo id or folder (overrides the config's base; 'tiny' = random tiny model)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (schedule.max_steps)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr_bokeh=1e-5")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    def work() -> int:
        config = load_config(args.config, args.overrides)
        if args.base:
            config.base = args.base
        if args.max_steps is not None:
            config.schedule.max_steps = args.max_steps
        result = train(config, args.output, progress=not args.quiet)
        if result.final is not None:
            print(f"trained to step {result.step}; weights in {result.final} (render with: python -m "
                  f"magicbokeh render PHOTO -o OUT.png --backend magicbokeh --checkpoint {result.final})")
        return 0

    return run_command(work, verbose=args.verbose,
                       interrupted="interrupted; rerun the same command to resume from the last complete checkpoint")


if __name__ == "__main__":
    sys.exit(main())
