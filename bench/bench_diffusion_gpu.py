"""GPU benchmark of the MagicBokeh diffusion backend (one CUDA device, random weights, no downloads).

Measures, in fp16 on full-size SD2.1 architectures with seeded random weights:

* per-tile latency and peak GPU memory of our path with SDPA attention at tile batches 1 / 4 / 8;
* the same with xformers attention when xformers imports and passes a smoke test (skipped otherwise);
* the official-style path (text encoder per tile, unmerged peft LoRA, explicit-score attention with
  fp32 ``-100`` masks repeated per head, batch 1);
* a 1562×1024 photo end to end (18 tiles) with our default settings, and its re-render with cached
  latents; the fp16 difference between our output and the official-style output on one tile.

Prints a markdown table and writes it to ``--out``. ``--smoke`` runs tiny models on the CPU to
check the script. Every case is isolated: a failure is reported in the table, not fatal.

Usage: ``python bench/bench_diffusion_gpu.py --out results.md [--smoke] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

SEED = 42
FOCUS, K = 0.9, 32.0


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_mem(device):
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else float("nan")


def _inputs(h: int, w: int):
    import numpy as np

    from bench_diffusion_common import bench_image
    from magicbokeh.focus import defocus_map, in_focus_mask, quantise_disparity_8bit

    img, disp = bench_image(h, w)
    disp = quantise_disparity_8bit(disp)
    focus = float(quantise_disparity_8bit(np.float32([[FOCUS]]))[0, 0])
    defocus = defocus_map(disp, focus, K)
    return img, defocus, in_focus_mask(defocus)


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


def build_ours(args, device, dtype, kernel: str):
    from bench_diffusion_common import SD21_SCHEDULER, build_stock, synthetic_checkpoint
    from magicbokeh.diffusion.loading import assemble, finalize
    from magicbokeh.diffusion.pipeline import MagicBokehPipeline

    unet, vae = build_stock(args.smoke, device="cpu")  # merge on CPU in fp32, as the loader does
    ckpt = synthetic_checkpoint(unet, vae, tiny=args.smoke)
    unet, controlnet, vae, report = assemble(unet, vae, ckpt, kernel=kernel)
    del ckpt
    model = finalize(unet, controlnet, vae, scheduler_config=SD21_SCHEDULER, device=device, dtype=dtype,
                     kernel=kernel, info=report)  # fmt: skip
    gc.collect()
    return MagicBokehPipeline(model)


def bench_tiles(args, pipe, label: str, device, rows: list, batches=(1, 4, 8)) -> None:
    """Per-tile latency for tile batches 1/4/8: a 1×B strip of tiles rendered in one pass."""
    tile = pipe.model.tile_size
    for batch in batches:
        name = f"{label}, tile batch {batch}"
        try:
            img, dfc, msk = _inputs(tile, tile + (tile // 2) * (batch - 1))
            pipe.render(img, dfc, msk, seed=SEED, tile_batch=batch)  # warm-up (kernels, allocator)
            _sync(device)
            _reset_mem(device)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = pipe.render(img, dfc, msk, seed=SEED, tile_batch=batch)
                _sync(device)
                times.append((time.perf_counter() - t0) / out.stats["tiles"])
            assert out.stats["tiles"] == batch and out.stats["batch"] == batch, out.stats
            rows.append({"case": name, "ms_per_tile": 1000 * _median(times), "peak_gb": _peak_gb(device),
                         "stages": {k: round(v, 4) for k, v in out.timings.items()}})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
            rows.append({"case": name, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            traceback.print_exc()
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)


def bench_official(args, device, dtype, rows: list):
    from bench_diffusion_common import SD21_SCHEDULER, build_stock, synthetic_checkpoint, text_encoder_fn
    from magicbokeh.diffusion.pipeline import tile_noise
    from magicbokeh.diffusion.reference import build_official_style, official_render

    name = "official-style (text encoder per tile, unmerged peft, explicit −100 masks), batch 1"
    try:
        unet, vae = build_stock(args.smoke, device="cpu")
        ckpt = synthetic_checkpoint(unet, vae, tiny=args.smoke)
        te = text_encoder_fn(args.smoke, device, dtype)
        model = build_official_style(unet, vae, ckpt, SD21_SCHEDULER, text_encoder=te, device=device, dtype=dtype)
        del ckpt
        tile = 64 if args.smoke else 512
        lat = tile // (4 if args.smoke else 8)
        img, dfc, _ = _inputs(tile, tile)
        noise = lambda i, j: tile_noise(SEED, i, j, (4, lat, lat))[None]  # noqa: E731
        out = official_render(model, img, dfc, noise, tile=tile)  # warm-up
        _sync(device)
        _reset_mem(device)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = official_render(model, img, dfc, noise, tile=tile)
            _sync(device)
            times.append(time.perf_counter() - t0)
        rows.append({"case": name, "ms_per_tile": 1000 * _median(times), "peak_gb": _peak_gb(device)})
        return model, out
    except Exception as exc:  # noqa: BLE001
        rows.append({"case": name, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        traceback.print_exc()
        return None, None
    finally:
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)


def bench_photo(args, pipe, device, rows: list) -> None:
    """A 1562×1024 photo (18 tiles) with default settings, then a re-render with cached latents."""
    h, w = (128, 196) if args.smoke else (1024, 1562)
    img, dfc, msk = _inputs(h, w)
    try:
        _reset_mem(device)
        t0 = time.perf_counter()
        out = pipe.render(img, dfc, msk, seed=SEED)  # first render of this photo size (cold shapes)
        _sync(device)
        first = time.perf_counter() - t0
        rows.append({"case": f"{w}×{h} photo, first render (new shapes), tile batch {out.stats['batch']}",
                     "total_s": first, "peak_gb": _peak_gb(device)})  # fmt: skip
        _reset_mem(device)
        times = []
        for _ in range(args.repeats):  # steady state: the app renders the same sizes again and again
            t0 = time.perf_counter()
            out = pipe.render(img, dfc, msk, seed=SEED)
            _sync(device)
            times.append(time.perf_counter() - t0)
        rows.append({"case": f"{w}×{h} photo, {out.stats['tiles']} tiles, tile batch {out.stats['batch']} "
                     f"({pipe.model.kernel}), steady state", "total_s": _median(times), "peak_gb": _peak_gb(device),
                     "stages": {k: round(v, 3) for k, v in out.timings.items()}})  # fmt: skip
        pipe.render(img, dfc, msk, seed=SEED, image_key="photo")  # fills the latent cache
        _, dfc2, msk2 = _inputs(h, w)
        dfc2 = dfc2 * 0.5
        t0 = time.perf_counter()
        out2 = pipe.render(img, dfc2, dfc2 <= 0.1, seed=SEED, image_key="photo")
        _sync(device)
        rows.append({"case": f"same photo, new K, cached latents ({out2.stats['cached']} tiles reused)",
                     "total_s": time.perf_counter() - t0, "peak_gb": _peak_gb(device)})  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        rows.append({"case": "1562×1024 photo", "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        traceback.print_exc()
    print(json.dumps(rows[-3:]), file=sys.stderr, flush=True)


def _use_kernel(pipe, kernel: str) -> None:
    from magicbokeh.diffusion.attention import set_kernel

    for m in (pipe.model.unet, pipe.model.controlnet):
        set_kernel(m, kernel)
    pipe.model.kernel = kernel


def markdown(args, env: dict, rows: list, notes: list) -> str:
    lines = [
        "## GPU benchmark (`bench/bench_diffusion_gpu.py`)" + (" — SMOKE RUN (tiny models)" if args.smoke else ""),
        "",
        f"Device: {env['device']}; torch {env['torch']}, CUDA {env['cuda']}, diffusers {env['diffusers']}, "
        f"xformers {env['xformers']}; Python {env['python']}. "
        + ("fp32 tiny models on the CPU (script check only). " if args.smoke else
           "fp16, full-size SD2.1 architectures with seeded random weights. ")
        + f"Median of {args.repeats} runs after a warm-up.",
        "",
        "| case | ms / tile | total (s) | peak GPU memory (GiB) | stages (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | – | – | – | skipped: {r['error']} |")
            continue
        ms = f"{r['ms_per_tile']:.0f}" if "ms_per_tile" in r else "–"
        tot = f"{r['total_s']:.2f}" if "total_s" in r else "–"
        stages = ", ".join(f"{k} {v}" for k, v in r.get("stages", {}).items() if k in ("encode", "denoise", "decode", "total"))
        lines.append(f"| {r['case']} | {ms} | {tot} | {r['peak_gb']:.2f} | {stages} |")
    lines += [""] + [f"* {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="markdown file to write")
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script only)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-official", action="store_true")
    p.add_argument("--compile", action="store_true", help="also time torch.compile at tile batch 4 (slow to compile)")
    args = p.parse_args(argv)

    import torch

    t_start = time.perf_counter()
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --smoke to check the script on a CPU")
    dtype = torch.float32 if args.smoke else torch.float16
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    import diffusers

    from magicbokeh.diffusion.devices import xformers_status

    xf_ok, xf_reason = xformers_status(str(device)) if device.type == "cuda" else (False, "CPU smoke run")
    try:
        import xformers

        xf_version = xformers.__version__
    except Exception as exc:  # noqa: BLE001
        xf_version = f"not importable ({type(exc).__name__})"
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'x86_64'})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "diffusers": diffusers.__version__,
        "xformers": xf_version, "python": platform.python_version(),
    }  # fmt: skip
    rows: list = []
    notes: list = []

    # 1. ours, SDPA (and xformers if usable): per-tile latency at tile batches 1/4/8
    pipe = build_ours(args, device, dtype, "sdpa")
    bench_tiles(args, pipe, "ours fp16 SDPA" if not args.smoke else "ours fp32 SDPA (smoke)", device, rows)
    if xf_ok:
        _use_kernel(pipe, "xformers")
        bench_tiles(args, pipe, "ours fp16 xformers", device, rows)
    else:
        rows.append({"case": "ours fp16 xformers", "error": xf_reason})

    # 2. a 1562×1024 photo end to end with the default tile batch and kernel (xformers if usable)
    bench_photo(args, pipe, device, rows)

    # 3. official-style path, and the difference to ours on one tile
    if not args.skip_official:
        _use_kernel(pipe, "sdpa")
        ref_model, ref_out = bench_official(args, device, dtype, rows)
        if ref_out is not None:
            tile = pipe.model.tile_size
            img, dfc, msk = _inputs(tile, tile)
            ours = pipe.render(img, dfc, msk, seed=SEED, color_fix="none").image * 2 - 1
            diff = abs(ours - ref_out)
            notes.append(f"our output vs official-style on one tile ({'fp32' if args.smoke else 'fp16'}): max abs "
                         f"difference {diff.max():.2e}, mean {diff.mean():.2e} (outputs in [−1, 1])")  # fmt: skip
            ours_b1 = [r for r in rows if r["case"].endswith("SDPA, tile batch 1") and "ms_per_tile" in r]
            off = [r for r in rows if r["case"].startswith("official-style") and "ms_per_tile" in r]
            if ours_b1 and off:
                notes.append(f"speed-up at batch 1 (ours SDPA vs official-style): {off[0]['ms_per_tile'] / ours_b1[0]['ms_per_tile']:.2f}×")
        del ref_model
    # 4. optional: torch.compile (ControlNet, VAE, UNet ResNet blocks), tile batch 4 only
    if args.compile:
        from magicbokeh.diffusion.loading import compile_for_inference

        _use_kernel(pipe, "xformers" if xf_ok else "sdpa")
        t0 = time.perf_counter()
        compile_for_inference(pipe.model.unet, pipe.model.controlnet, pipe.model.vae)
        bench_tiles(args, pipe, f"ours fp16 {pipe.model.kernel} + torch.compile", device, rows, batches=(4,))
        notes.append(f"torch.compile case: {time.perf_counter() - t0:.0f} s including compilation")
    notes.append(f"xformers: {'used' if xf_ok else 'not used'} ({xf_reason})")
    notes.append(f"script wall time {time.perf_counter() - t_start:.0f} s")

    text = markdown(args, env, rows, notes)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows, "notes": notes}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
