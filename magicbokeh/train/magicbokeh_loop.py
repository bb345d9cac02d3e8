"""The MagicBokeh training loop: set-up on accelerate, phase-scheduled optimizer steps, validation.

:class:`Trainer` runs in numbered steps (resume point, network and optimizers, data, optimizer
steps, export); the objects of a running session live in :class:`Session`. Checkpoint I/O is in
``magicbokeh_checkpoint``, losses and posterior noise in ``magicbokeh_losses``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import MagicBokehError
from ..publish import publish_text
from .magicbokeh_checkpoint import EMA_DIR, RESUME_DIR, CheckpointWriter, check_resume, ema_from, load_optimizers
from .magicbokeh_config import PHASE_DATA, PHASES, TINY_BASE, Config
from .magicbokeh_losses import load_lpips, pixel_loss, posterior_noise
from .magicbokeh_tiny import make_tiny_base

logger = logging.getLogger(__name__)

TINY_BASE_DIR = "tiny-base"


@dataclass
class TrainResult:
    """What a run produced."""

    output: Path
    final: Path | None
    step: int
    resumed_from: int | None


def counts_before(config: Config, step: int) -> tuple[dict[str, int], dict[str, int]]:
    """(steps per phase, steps per data stream) before optimizer step ``step``."""
    phases = {p: 0 for p in PHASES}
    for s in range(step):
        phases[config.phase_at(s)] += 1
    streams = {"sr": phases["sr_pretrain"] + phases["isr"], "bokeh": phases["bokeh"]}
    return phases, streams


@dataclass
class Session:
    """The live objects of one run between set-up and export."""

    acc: Any  # accelerate.Accelerator
    model: Any  # the prepared (possibly DDP-wrapped) network
    raw: Any  # the unwrapped MagicBokehNet
    params: dict[str, Any]  # raw's parameters by name
    union: dict[str, Any]  # every parameter any phase trains
    opts: dict[str, Any]  # one prepared AdamW per phase
    ema: dict[str, Any] | None  # EMA tensors by parameter name, or None
    batches: Callable[[str], Iterator[dict[str, Any]]]  # stream name -> endless batch iterator
    val: dict[str, list[dict[str, Any]]]  # fixed validation items by kind
    lpips_fn: Any | None
    noise_shape: tuple[int, ...]
    phase_counts: dict[str, int]
    stream_counts: dict[str, int]
    metrics: Any | None  # MetricsLog on the main process
    last_saved: int | None
    writer: CheckpointWriter


class Trainer:
    """One training run (see ``magicbokeh.train.magicbokeh``). ``run()`` trains and exports."""

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
        sr = SRPairs(sr_dir, resolution=d.resolution, degrade_fn=degrade, seed=seed, sharpen_target=d.sharpen_target)
        val_bokeh = BokehPairs(d.val_bokeh_dir or bokeh_dir, resolution=d.resolution, bokeh_input=d.bokeh_input,
                               degrade_fn=degrade, quantize=d.quantize_disparity, seed=seed, train=False)
        val_sr = SRPairs(d.val_sr_dir or sr_dir, resolution=d.resolution, degrade_fn=degrade, seed=seed, train=False,
                         sharpen_target=d.sharpen_target)
        datasets = {"sr": DrawDataset(sr, seed=seed, stream="sr"), "bokeh": DrawDataset(bokeh, seed=seed, stream="bokeh")}
        n = d.val_samples
        val = {
            "bokeh": [val_bokeh.item(i, -1) for i in range(min(n, len(val_bokeh)))],
            "isr": [val_sr.item(i, -1) for i in range(min(n, len(val_sr)))],
        }
        logger.info("data: %d SR photos (%s), %d bokeh pairs (%s)", len(sr), sr_dir, len(bokeh), bokeh_dir)
        return datasets, val

    def _resume_point(self):
        """(start step, checkpoint folder, trainer state, initial weights): the last complete
        checkpoint wins over ``init_from``."""
        from ..diffusion.checkpoint import read_trained_folder
        from .common import last_checkpoint
        from .magicbokeh_model import read_init

        last = last_checkpoint(self.output)
        if last is not None:
            start, ckpt_dir = last
            state = check_resume(self.config, ckpt_dir)
            init = read_trained_folder(ckpt_dir)
            logger.info("resuming from %s (step %d)", ckpt_dir, start)
            return start, ckpt_dir, state, init
        init = read_init(self.config.init_from) if self.config.init_from else None
        return 0, None, None, init

    def _network(self, acc, base_files, init, state, ckpt_dir):
        """The network (the backend's architecture, peft adapters separate), per-phase AdamW, EMA."""
        import torch

        from ..diffusion.checkpoint import read_trained_folder
        from .magicbokeh_model import (
            build_net,
            cast_frozen,
            enable_gradient_checkpointing,
            phase_parameters,
            set_trainable,
            trainable_parameters,
        )

        c, t = self.config, self.config.train
        torch.manual_seed(t.seed)  # adapter and ControlNet-embedding init (overwritten on resume)
        net, adapters = build_net(c, base_files, init=init)
        self.net = net
        self.adapters = adapters
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
                ema = ema_from(net, read_trained_folder(ckpt_dir / EMA_DIR))
            else:
                logger.warning("%s has no EMA weights (train.ema was off); the EMA starts from its weights", ckpt_dir)
        for phase in PHASES:
            logger.info("phase %s trains %d tensors, %d parameters", phase, len(by_phase[phase]),
                        sum(p.numel() for p in by_phase[phase].values()))
        prepared = acc.prepare(net, *[optimizers[p] for p in PHASES])
        model, opts = prepared[0], dict(zip(PHASES, prepared[1:]))
        if state is not None:
            load_optimizers(opts, ckpt_dir / RESUME_DIR, self.phase_names)
            if acc.scaler is not None and state.get("scaler"):
                acc.scaler.load_state_dict(state["scaler"])
        raw = acc.unwrap_model(model)
        params = dict(raw.named_parameters())
        if ema is not None:
            ema = {n: v.to(params[n].device) for n, v in ema.items()}
        return model, raw, params, union, opts, ema

    def _noise_shape(self, raw) -> tuple[int, ...]:
        t = self.config.train
        lat = raw.tile_size // raw.consts.vae_scale_factor
        if self.config.data.resolution != raw.tile_size:
            logger.warning("data.resolution=%d differs from the model tile %d px; the backend renders %d px tiles",
                           self.config.data.resolution, raw.tile_size, raw.tile_size)
            lat = self.config.data.resolution // raw.consts.vae_scale_factor
        return (t.batch_size, raw.latent_channels, lat, lat)

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        acc = self._accelerator()
        try:
            return self._run(acc)
        finally:
            if acc.num_processes == 1:  # accelerate's state is a per-process singleton: let the next
                _reset_accelerate_state()  # in-process run choose its own precision / accumulation

    def _run(self, acc) -> TrainResult:
        from tqdm import tqdm

        from .common import MetricsLog, remove_stale_temporaries
        from .magicbokeh_data import stream_loader

        c, t = self.config, self.config.train
        main = acc.is_main_process
        # 0. the loss first: a configured LPIPS that cannot be built stops the run before anything is written
        lpips_fn = load_lpips(c.loss, acc.device)
        self.output.mkdir(parents=True, exist_ok=True)
        if main:
            remove_stale_temporaries(self.output)
        acc.wait_for_everyone()

        # 1. resume or start
        start, ckpt_dir, state, init = self._resume_point()
        base_src, base_files = self._base(acc)
        self.base_src = base_src
        if main:
            import yaml

            publish_text(self.output / "train_config.yaml", yaml.safe_dump(c.to_dict(), sort_keys=False))

        # 2. network, optimizers, EMA
        model, raw, params, union, opts, ema = self._network(acc, base_files, init, state, ckpt_dir)

        # 3. data streams (each endless, starting where the schedule left it)
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

        metrics = MetricsLog(self.output / "metrics.jsonl", resume_step=start if start else None) if main else None
        self.metrics_path = self.output / "metrics.jsonl"
        bar = tqdm(total=c.schedule.max_steps, initial=start, desc="train", unit="step", file=sys.stderr,
                   disable=not (main and self.progress), dynamic_ncols=True)
        s = Session(acc=acc, model=model, raw=raw, params=params, union=union, opts=opts, ema=ema, batches=batches,
                    val=val, lpips_fn=lpips_fn, noise_shape=self._noise_shape(raw), phase_counts=phase_counts,
                    stream_counts=stream_counts, metrics=metrics, last_saved=start if ckpt_dir is not None else None,
                    writer=CheckpointWriter(c, self.output, base_src, self.adapters, self.phase_names))

        # 4. optimizer steps, each followed by 5. log, validate, checkpoint
        step = start
        while step < c.schedule.max_steps:
            t0 = time.perf_counter()
            phase, lr, parts = self._optimizer_step(s, step)
            step += 1
            total = self._after_step(s, step, phase, lr, parts, t0)
            bar.update(1)
            bar.set_postfix(phase=phase, loss=f"{total:.4f}")
        bar.close()

        # 6. export
        final = None
        if main:
            final = s.writer.export_final(raw, ema, step)
        acc.wait_for_everyone()
        acc.end_training()
        return TrainResult(self.output, final, step, start if ckpt_dir is not None else None)

    def _optimizer_step(self, s: Session, step: int) -> tuple[str, float, dict[str, float]]:
        """Optimizer step ``step`` (0-based) of its phase's parameters; returns (phase, lr, mean losses)."""
        import torch

        from ..diffusion.devices import is_out_of_memory
        from .magicbokeh_model import set_trainable

        c, t, acc = self.config, self.config.train, s.acc
        phase = c.phase_at(step)
        stream = PHASE_DATA[phase]
        set_trainable(s.raw, set(self.phase_names[phase]))
        opt = s.opts[phase]
        k = s.phase_counts[phase]
        lr = c.lr_for(phase) * (min(1.0, (k + 1) / c.optim.warmup_steps) if c.optim.warmup_steps else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        parts = {"l2": 0.0, "lpips": 0.0}
        try:
            for micro in range(t.gradient_accumulation_steps):
                batch = next(s.batches(stream))
                with acc.accumulate(s.model):
                    x = batch["input"].to(acc.device) * 2 - 1
                    target = batch["target"].to(acc.device) * 2 - 1
                    if phase == "bokeh":
                        defocus, in_focus = batch["defocus"].to(acc.device), batch["in_focus"].to(acc.device)
                    else:  # Real-ISR / SR: all-zero defocus map, no attention restriction
                        defocus, in_focus = torch.zeros_like(batch["defocus"]).to(acc.device), None
                    noise = posterior_noise(t.seed, step, micro, acc.process_index, s.noise_shape).to(acc.device)
                    pred = s.model(x, defocus, in_focus, noise)
                    loss, l2, lp = pixel_loss(pred, target, c.loss, s.lpips_fn)
                    acc.backward(loss)
                    if acc.sync_gradients and c.optim.max_grad_norm > 0:
                        acc.clip_grad_norm_([s.params[n] for n in self.phase_names[phase]], c.optim.max_grad_norm)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                parts["l2"] += float(l2) / t.gradient_accumulation_steps
                parts["lpips"] += float(lp) / t.gradient_accumulation_steps
        except Exception as exc:
            if isinstance(exc, MemoryError) or is_out_of_memory(exc):
                kept = f"the last complete checkpoint (step {s.last_saved}) is intact; " if s.last_saved else ""
                raise MagicBokehError(
                    f"out of memory at step {step + 1} ({phase}, batch {t.batch_size} at {c.data.resolution} px): "
                    "lower train.batch_size (raise train.gradient_accumulation_steps to keep the effective "
                    "batch), set train.gradient_checkpointing=true and train.mixed_precision=bf16; "
                    f"{kept}rerun the same command to resume."
                ) from exc
            raise
        if s.ema is not None:
            with torch.no_grad():
                for n in self.phase_names[phase]:
                    s.ema[n].mul_(t.ema_decay).add_(s.params[n].detach(), alpha=1 - t.ema_decay)
        s.phase_counts[phase] += 1
        s.stream_counts[stream] += 1
        set_trainable(s.raw, set(s.union))
        return phase, lr, parts

    def _after_step(self, s: Session, step: int, phase: str, lr: float, parts: dict[str, float], t0: float) -> float:
        """Log the step (mean over processes), validate and checkpoint when due; returns the total loss."""
        import torch

        c, acc = self.config, s.acc
        main = acc.is_main_process
        losses = torch.tensor([parts["l2"], parts["lpips"]], device=acc.device)
        losses = acc.reduce(losses, reduction="mean") if acc.num_processes > 1 else losses
        l2_v, lp_v = (float(v) for v in losses)
        total = c.loss.l2_weight * l2_v + (c.loss.lpips_weight * lp_v if s.lpips_fn is not None else 0.0)
        record: dict[str, Any] = {"step": step, "phase": phase, "loss": total, "loss_l2": l2_v}
        if s.lpips_fn is not None:
            record["loss_lpips"] = lp_v
        record.update(lr=lr, step_time_s=round(time.perf_counter() - t0, 4))
        do_val = step % c.logging.sample_every == 0 or step == c.schedule.max_steps
        if do_val:
            acc.wait_for_everyone()
            if main:
                record.update(self._validate(s.raw, s.val, step, acc, s.lpips_fn))
            acc.wait_for_everyone()
        if main and (step % c.logging.log_every == 0 or do_val):
            s.metrics.write(record)
        if step % c.logging.checkpoint_every == 0 or step == c.schedule.max_steps:
            s.writer.save_checkpoint(acc, s.raw, s.opts, s.ema, step, phase)
            s.last_saved = step
        return total

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


def _reset_accelerate_state() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def train(config: Config, output: str | Path, *, progress: bool = True) -> TrainResult:
    """Train (or resume) into ``output``; see :class:`Trainer`."""
    return Trainer(config, output, progress=progress).run()


__all__ = ["TINY_BASE_DIR", "Session", "TrainResult", "Trainer", "counts_before", "train"]
