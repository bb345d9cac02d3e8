"""Time one MagicBokeh training step and its peak memory, per phase, batch size and checkpointing.

The step is the trainer's own: ``build_net_from_modules`` (the backend's architecture with separate
peft adapters), frozen weights stored in the autocast dtype (``cast_frozen``), the phase's AdamW,
``MagicBokehNet.forward`` under autocast, pixel L2 loss, backward, optimizer step. Inputs are
synthetic tensors (no data loading, no LPIPS), weights seeded random (no downloads). Each case runs
in its own subprocess so that its CPU peak RSS is its own; on CUDA the peak is
``torch.cuda.max_memory_allocated``.

Usage (from the repository root)::

    python bench/bench_train_step.py                       # tiny model, CPU, 64 px tile, bf16
    python bench/bench_train_step.py --model full --resolution 256 --batches 1 --checkpointing on
    python bench/bench_train_step.py --model full --device cuda --resolution 512 --batches 1 4   # GPU

Prints one JSON line per case and a markdown table; ``--analytic`` prints the full-size parameter /
optimizer memory breakdown (built on the meta device, no memory used).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

PHASES = ("sr_pretrain", "bokeh", "isr")


def _config(model: str, resolution: int):
    from magicbokeh.train.magicbokeh_config import Config

    config = Config.from_dict({"base": "bench", "data": {"resolution": resolution}})
    if model == "tiny":
        config.model.rank_attn = 8
        config.model.conditioning_embedding_out_channels = [8, 16, 16]
    return config


def build(model: str, resolution: int, device: str):
    import torch

    from bench_diffusion_common import SD21_SCHEDULER, build_stock
    from magicbokeh.train.magicbokeh_model import build_net_from_modules

    unet, vae = build_stock(tiny=model == "tiny")
    torch.manual_seed(0)
    net, _ = build_net_from_modules(_config(model, resolution), unet, vae, dict(SD21_SCHEDULER))
    return net.to(device)


def run_case(args) -> dict:
    import torch
    import torch.nn.functional as F

    from bench_diffusion_common import peak_rss_gb, reset_peak_rss
    from magicbokeh.train.magicbokeh_model import (
        cast_frozen,
        enable_gradient_checkpointing,
        phase_parameters,
        set_trainable,
        trainable_parameters,
    )

    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    t0 = time.perf_counter()
    net = build(args.model, args.resolution, args.device)
    build_s = time.perf_counter() - t0
    union = trainable_parameters(net)
    if dtype != torch.float32:
        cast_frozen(net, set(union), dtype)
    if args.checkpointing == "on":
        enable_gradient_checkpointing(net)
    params = phase_parameters(net)[args.phase]
    set_trainable(net, set(params))
    opt = torch.optim.AdamW(list(params.values()), lr=1e-5)
    b, r = args.batch, args.resolution
    f = net.consts.vae_scale_factor
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(b, 3, r, r, generator=gen) * 2 - 1).to(dev)
    target = (torch.rand(b, 3, r, r, generator=gen) * 2 - 1).to(dev)
    noise = torch.randn(b, net.latent_channels, r // f, r // f, generator=gen).to(dev)
    if args.phase == "bokeh":
        yy = torch.linspace(0, 1, r)[:, None].expand(r, r)
        defocus = (yy * 0.8)[None, None].expand(b, 1, r, r).contiguous().to(dev)  # in and out of focus
        in_focus = (defocus[:, 0] <= 0.1)
    else:
        defocus, in_focus = torch.zeros(b, 1, r, r, device=dev), None

    def step() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = net(x, defocus, in_focus, noise)
        loss = F.mse_loss(pred.float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    base_gb = peak_rss_gb() if dev.type == "cpu" else torch.cuda.memory_allocated() / 1024**3
    if dev.type == "cpu":
        reset_peak_rss()
    else:
        torch.cuda.reset_peak_memory_stats()
    first = step()  # includes the optimizer-state allocation
    times = [step() for _ in range(args.steps)]
    peak = peak_rss_gb() if dev.type == "cpu" else torch.cuda.max_memory_allocated() / 1024**3
    return {
        "model": args.model, "device": args.device, "phase": args.phase, "batch": b, "resolution": r,
        "dtype": args.dtype, "checkpointing": args.checkpointing, "build_s": round(build_s, 2),
        "first_step_s": round(first, 3), "step_s": round(statistics.median(times), 3),
        "steps_s": [round(t, 3) for t in times], "weights_gb": round(base_gb, 3), "peak_gb": round(peak, 3),
        "trainable_params": sum(p.numel() for p in params.values()),
    }  # fmt: skip


def analytic() -> dict:
    """Full-size parameter counts per part (meta device) and the memory they imply."""
    import torch

    from bench_diffusion_common import SD21_SCHEDULER, SD21_UNET, SD21_VAE
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from magicbokeh.train.magicbokeh_model import build_net_from_modules, part_parameters

    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**SD21_UNET), AutoencoderKL(**SD21_VAE)
        net, _ = build_net_from_modules(_config("full", 512), unet, vae, dict(SD21_SCHEDULER))
    parts = {k: sum(p.numel() for p in v.values()) for k, v in part_parameters(net).items()}
    trainable = set().union(*[set(v) for v in part_parameters(net).values()])
    frozen = sum(p.numel() for n, p in net.named_parameters() if n not in trainable)
    gb = 1024**3
    return {
        "params": {**parts, "frozen": frozen},
        "frozen_bf16_gb": frozen * 2 / gb,
        "trainable_fp32_gb": sum(parts.values()) * 4 / gb,
        "adamw_state_gb": {ph: n * 8 / gb for ph, n in (
            ("sr_pretrain", parts["vae_lora"] + parts["unet_lora"] + parts["conv_in"]),
            ("bokeh", parts["controlnet"] + parts["attn_lora"]), ("isr", parts["unet_lora"]))},
        "grads_gb": {"bokeh": (parts["controlnet"] + parts["attn_lora"]) * 4 / gb},
    }  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("tiny", "full"), default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, help="crop side (default: 64 tiny, 512 full)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--checkpointing", choices=("on", "off", "both"), default="both")
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    p.add_argument("--steps", type=int, default=3, help="timed steps after the first (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--analytic", action="store_true", help="print the full-size memory breakdown and exit")
    p.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.analytic:
        print(json.dumps(analytic(), indent=1))
        return 0
    args.resolution = args.resolution or (64 if args.model == "tiny" else 512)
    if args.case:
        print(json.dumps(run_case(args)))
        return 0
    rows = []
    ckpt = ("on", "off") if args.checkpointing == "both" else (args.checkpointing,)
    for batch in args.batches:
        for c in ckpt:
            for phase in args.phases:
                cmd = [sys.executable, __file__, "--case", "--model", args.model, "--device", args.device,
                       "--resolution", str(args.resolution), "--batch", str(batch), "--checkpointing", c,
                       "--phase", phase, "--dtype", args.dtype, "--steps", str(args.steps),
                       "--threads", str(args.threads)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"case {phase} b{batch} ckpt {c} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n| phase | batch | checkpointing | step (s, median) | first step (s) | peak memory (GB) | trainable params |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['batch']} | {r['checkpointing']} | {r['step_s']} | {r['first_step_s']} | "
              f"{r['peak_gb']} | {r['trainable_params']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
