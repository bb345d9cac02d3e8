"""GPU benchmark of the MagicBokeh diffusion backend: today's path against faster variants, in one run.

One prioritised script (default budget 470 s, so it fits a 10-minute device call with start-up to
spare). Every figure is printed the moment it is measured (``FIGURE name = value``) and the
markdown table is rewritten after each one, so a run cut short still leaves its most important
numbers. Order (most important first):

1. build today's model (fp16, SDPA, VAE channels-last) from full-size SD2.1 architectures with
   seeded random weights (no downloads);
2. ``magicbokeh.warmup.warm_up`` over the tile-batch shapes the test photos use, then the
   1562×1024 photo's *first* render and its steady state (goals: ≤ 0.35 s, first within 20 %);
3. per-tile time at the default batch (8) with encode / denoise / decode stages, and the fraction
   of the GPU's dense fp16 peak (FLOPs counted with ``torch.utils.flop_counter``);
4. variants applied to copies of the loaded networks (``magicbokeh/diffusion`` is not changed):
   channels-last UNet + ControlNet; + ``torch.compile`` (inductor, the regions of
   ``compile_for_inference``); + ``mode="reduce-overhead"`` (CUDA graphs); bf16; FP8 via torchao
   (skipped when torchao is absent). Each: ms/tile and stages at batch 8, the photo's time, and
   the output difference to today's path on that photo;
5. 12 MP (4000×3000, 165 tiles) end to end including Depth Anything V2 Small (random weights,
   fp32, as the app runs it) with today's path and the fastest variant (goal ≤ 2.5 s).

On ZeroGPU ``torch.compile`` is not allowed; there the compiled graphs would have to be built
ahead of time with ``spaces.aoti_capture`` / ``aoti_compile`` / ``aoti_apply`` (torch ≥ 2.8).

``--smoke`` runs tiny models on the CPU (64 px tiles, photos scaled by 1/8 so the tile counts
match, ``torch.compile(backend="eager")``) to check the script without a GPU.

Usage (device machine: torch with CUDA; diffusers travels as a wheel, see docs/spaces.md, "GPU benchmarks")::

    python bench/bench_diffusion_gpu.py --out $OUT/results_diffusion_gpu.md [--budget 470]
    python bench/bench_diffusion_gpu.py --smoke --out /tmp/gpu_smoke.md
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

SEED = 42
FOCUS, K = 0.9, 32.0
GOALS = {"ms_per_tile": 15.0, "photo_s": 0.35, "mp12_s": 2.5, "first_ratio": 1.2}


class Report:
    """Rows and notes; prints each figure at once and rewrites the markdown after each."""

    def __init__(self, args, env: dict):
        self.args, self.env = args, env
        self.rows: list[dict] = []
        self.figures: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.t_start = time.perf_counter()

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t_start)

    def figure(self, name: str, value: str) -> None:
        self.figures.append((name, value))
        print(f"FIGURE {name} = {value}  [t={time.perf_counter() - self.t_start:.0f} s]", flush=True)
        self.write()

    def row(self, row: dict) -> None:
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        self.write()

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"NOTE {text}", flush=True)
        self.write()

    def markdown(self) -> str:
        a, e = self.args, self.env
        lines = [
            "## GPU benchmark (`bench/bench_diffusion_gpu.py`)" + (" — SMOKE RUN (tiny models, CPU)" if a.smoke else ""),
            "",
            f"Device: {e['device']}; torch {e['torch']}, CUDA {e['cuda']}, diffusers {e['diffusers']}; Python "
            f"{e['python']}. " + ("Tiny fp32 models on the CPU, photos scaled by 1/8 (script check only). "
                                 if a.smoke else "Full-size SD2.1 architectures with seeded random weights. ")
            + f"Median of {a.repeats} runs after a warm-up. Goals (H200): ≤ {GOALS['ms_per_tile']:.0f} ms/tile at "
            f"batch 8, 1562×1024 ≤ {GOALS['photo_s']} s, 12 MP with depth ≤ {GOALS['mp12_s']} s, first render "
            f"within 20 % of steady state.",
            "",
            "### Headline figures (in the order measured)",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        lines += [f"| {n} | {v} |" for n, v in self.figures]
        lines += ["", "### Cases", "",
                  "| case | ms / tile | photo (s) | peak GPU memory (GiB) | stages (s) | output vs today |",
                  "|---|---|---|---|---|---|"]
        for r in self.rows:
            if "error" in r:
                lines.append(f"| {r['case']} | – | – | – | skipped: {r['error']} | – |")
                continue
            ms = f"{r['ms_per_tile']:.1f}" if "ms_per_tile" in r else "–"
            ph = f"{r['photo_s']:.3f}" if "photo_s" in r else "–"
            pk = f"{r['peak_gb']:.2f}" if r.get("peak_gb") == r.get("peak_gb") and "peak_gb" in r else "–"
            st = ", ".join(f"{k} {v:.4f}" for k, v in r.get("stages", {}).items())
            diff = r.get("diff", "–")
            lines.append(f"| {r['case']} | {ms} | {ph} | {pk} | {st} | {diff} |")
        lines += [""] + [f"* {n}" for n in self.notes]
        lines.append(f"* script wall time {time.perf_counter() - self.t_start:.0f} s (budget {a.budget:.0f} s)")
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.markdown())
        out.with_suffix(".json").write_text(json.dumps(
            {"env": self.env, "figures": self.figures, "rows": self.rows, "notes": self.notes}, indent=1))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_mem(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else float("nan")


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _inputs(h: int, w: int):
    """Photo, official-style defocus (8-bit disparity and focus, K = 32) and in-focus mask."""
    import numpy as np

    from bench_diffusion_common import bench_image
    from magicbokeh.focus import defocus_map, in_focus_mask, quantise_disparity_8bit

    img, disp = bench_image(h, w)
    disp = quantise_disparity_8bit(disp)
    focus = float(quantise_disparity_8bit(np.float32([[FOCUS]]))[0, 0])
    defocus = defocus_map(disp, focus, K)
    return img, defocus, in_focus_mask(defocus)


def _diff(a, b) -> str:
    import numpy as np

    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    mse = float((d**2).mean())
    psnr = float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
    return f"max {d.max():.2e}, mean {d.mean():.2e}, PSNR {psnr:.1f} dB"


def _sizes(smoke: bool) -> dict[str, tuple[int, int]]:
    if not smoke:
        return {"photo": (1024, 1562), "mp12": (3000, 4000)}
    # tiny tiles are 64 px: 1/8 scale keeps the photo's 18 tiles; the "12 MP" case is cut to 1/16
    # (40 tiles instead of 165) to keep the CPU check short
    return {"photo": (128, 196), "mp12": (188, 250)}


def build_today(args, device, dtype):
    """Today's model: the loader's assemble + finalize on full-size (or tiny) random weights."""
    from bench_diffusion_common import SD21_SCHEDULER, build_stock, synthetic_checkpoint
    from magicbokeh.diffusion.loading import assemble, finalize

    unet, vae = build_stock(args.smoke, device="cpu")  # merge on CPU in fp32, as the loader does
    ckpt = synthetic_checkpoint(unet, vae, tiny=args.smoke)
    unet, controlnet, vae, report = assemble(unet, vae, ckpt, kernel="sdpa")
    del ckpt
    model = finalize(unet, controlnet, vae, scheduler_config=SD21_SCHEDULER, device=device, dtype=dtype,
                     kernel="sdpa", info=report)  # fmt: skip
    gc.collect()
    return model


def clone(model, tag: str, *, dtype=None, channels_last: bool = False):
    """A copy of the loaded networks (optionally recast / channels-last) as a new model object."""
    import torch

    nets = {name: copy.deepcopy(getattr(model, name)) for name in ("unet", "controlnet", "vae")}
    for net in nets.values():
        if dtype is not None:
            torch.nn.Module.to(net, dtype=dtype)
        if channels_last:
            torch.nn.Module.to(net, memory_format=torch.channels_last)
    return dataclasses.replace(model, **nets, dtype=dtype or model.dtype, key=f"{model.key}:{tag}")


def compile_regions(model, *, mode: str | None, backend: str) -> None:
    """torch.compile the regions ``compile_for_inference`` picks (ControlNet, VAE encoder/decoder
    whole; the UNet's ResNet blocks and samplers), with a chosen mode, in place."""
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

    kwargs: dict[str, Any] = {"dynamic": False, "backend": backend}
    if mode and backend == "inductor":
        kwargs["mode"] = mode
    for module in (model.controlnet, model.vae.encoder, model.vae.decoder):
        module.compile(**kwargs)
    for module in model.unet.modules():
        if isinstance(module, (ResnetBlock2D, Downsample2D, Upsample2D)):
            module.compile(**kwargs)


def fp8_quantise(model) -> str:
    """FP8 dynamic activation + weight quantisation of the UNet and ControlNet linears (torchao)."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

    for net in (model.unet, model.controlnet):
        quantize_(net, Float8DynamicActivationFloat8WeightConfig())
    return "torchao Float8DynamicActivationFloat8WeightConfig on UNet + ControlNet linears"


def time_strip(pipe, device, batch: int, repeats: int) -> tuple[float, dict, float]:
    """(seconds per tile, stage seconds per tile, peak GiB) of a 1 × batch strip in one pass."""
    tile = pipe.model.tile_size
    img, dfc, msk = _inputs(tile, tile + (tile // 2) * (batch - 1))
    pipe.render(img, dfc, msk, seed=SEED, tile_batch=batch)  # warm (and compile) this shape
    _sync(device)
    _reset_mem(device)
    times, stages = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = pipe.render(img, dfc, msk, seed=SEED, tile_batch=batch)
        _sync(device)
        times.append((time.perf_counter() - t0) / batch)
        stages.append(out.timings)
    assert out.stats["tiles"] == batch and out.stats["batch"] == batch, out.stats
    mid = stages[times.index(_median(times))] if repeats % 2 else stages[-1]
    per_tile = {k: mid[k] / batch for k in ("encode", "denoise", "decode") if k in mid}
    return _median(times), per_tile, _peak_gb(device)


def time_photo(pipe, device, h: int, w: int, repeats: int) -> tuple[float, Any, dict]:
    img, dfc, msk = _inputs(h, w)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = pipe.render(img, dfc, msk, seed=SEED)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return _median(times), out.image, dict(out.timings)


def end_to_end_12mp(pipe, depth_model, device, sizes, repeats: int) -> tuple[float, dict]:
    """12 MP: Depth Anything (as the app: fp32, 518 px) + defocus + tiled render, seconds."""
    import numpy as np

    from bench_diffusion_common import bench_image
    from magicbokeh.depth.depth_anything import predict_disparity
    from magicbokeh.focus import defocus_map, in_focus_mask, normalise_disparity, quantise_disparity_8bit

    h, w = sizes["mp12"]
    img, disp_synth = bench_image(h, w)
    times, stages = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        if depth_model is not None:
            disp = normalise_disparity(predict_disparity(depth_model, img, input_size=518))
        else:
            disp = disp_synth
        t_depth = time.perf_counter() - t0
        disp = quantise_disparity_8bit(disp)
        focus = float(quantise_disparity_8bit(np.float32([[FOCUS]]))[0, 0])
        defocus = defocus_map(disp, focus, K)
        out = pipe.render(img, defocus, in_focus_mask(defocus), seed=SEED)
        _sync(device)
        times.append(time.perf_counter() - t0)
        stages = {"depth": t_depth, **{k: v for k, v in out.timings.items() if k in ("encode", "denoise", "decode", "total")}}
    return _median(times), stages


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="markdown file to write (and .json next to it)")
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script only)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=470.0, help="seconds; later cases are skipped when short")
    p.add_argument("--skip-compile", action="store_true", help="skip the torch.compile variants")
    args = p.parse_args(argv)

    import torch

    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --smoke to check the script on a CPU")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.float32 if args.smoke else torch.float16
    import diffusers

    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'x86_64'})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }  # fmt: skip
    rep = Report(args, env)
    sizes = _sizes(args.smoke)
    compile_backend = "eager" if args.smoke else "inductor"

    from bench_diffusion_common import build_depth_model, count_flops, peak_flops
    from magicbokeh.diffusion.pipeline import MagicBokehPipeline, balanced_batch
    from magicbokeh.diffusion.tiling import tile_count
    from magicbokeh.warmup import common_batch_sizes, warm_up

    # 1. today's model
    t0 = time.perf_counter()
    model = build_today(args, device, dtype)
    rep.note(f"built today's model ({model.describe()}) in {time.perf_counter() - t0:.0f} s")
    pipe = MagicBokehPipeline(model)
    tile = model.tile_size

    # 2. warm-up, then the photo's first render and steady state
    shapes: set[int] = set(common_batch_sizes(1600, 8)) if not args.smoke else set()
    for h, w in sizes.values():
        n = tile_count(h, w, tile)
        b = balanced_batch(n, 8)
        shapes |= {b, n - b * (math.ceil(n / b) - 1)}
    shapes.add(8)
    t0 = time.perf_counter()
    warm = warm_up(model, sorted(shapes))
    _sync(device)
    rep.figure("warm-up at start-up", f"{time.perf_counter() - t0:.1f} s for tile batches {sorted(warm)}")
    ph, pw = sizes["photo"]
    _reset_mem(device)
    first, _, _ = time_photo(pipe, device, ph, pw, 1)
    steady, ref_photo, photo_stages = time_photo(pipe, device, ph, pw, args.repeats)
    rep.figure(f"{pw}×{ph} first render after warm-up (today)", f"{first:.3f} s")
    rep.figure(f"{pw}×{ph} steady state (today)", f"{steady:.3f} s (goal ≤ {GOALS['photo_s']} s on an H200); "
               f"first/steady = {first / steady:.2f} (goal ≤ {GOALS['first_ratio']})")
    # 3. per tile at batch 8 + fraction of peak
    try:
        s_tile, stages, peak = time_strip(pipe, device, 8, args.repeats)
        rep.row({"case": "today: fp16 SDPA, VAE channels-last, tile batch 8", "ms_per_tile": 1000 * s_tile,
                 "photo_s": steady, "peak_gb": peak, "stages": stages})
        rep.figure("today ms/tile at batch 8", f"{1000 * s_tile:.1f} ms (encode {1000 * stages.get('encode', 0):.1f}, "
                   f"denoise {1000 * stages.get('denoise', 0):.1f}, decode {1000 * stages.get('decode', 0):.1f}; "
                   f"goal ≤ {GOALS['ms_per_tile']:.0f})")
        img1, d1, m1 = _inputs(tile, tile)
        flops = count_flops(lambda: MagicBokehPipeline(model).render(img1, d1, m1, seed=SEED, tile_batch=1))
        peak_f = peak_flops(env["device"])
        frac = f", {flops / s_tile / peak_f:.1%} of the {peak_f / 1e12:.0f} TFLOP/s fp16 peak" if peak_f else ""
        rep.figure("FLOPs per tile (encode + ControlNet + UNet + decode)", f"{flops / 1e12:.3f} TFLOP"
                   f"{frac} at {1000 * s_tile:.1f} ms/tile")
        rep.figure("throughput today", f"{flops / s_tile / 1e12:.1f} TFLOP/s{frac}")
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        rep.row({"case": "today, tile batch 8", "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        s_tile, flops = float("nan"), float("nan")

    # 4. variants on copies of the loaded networks
    def fp8():
        import torchao  # noqa: F401 - skipped when absent

        m = clone(model, "fp8", dtype=torch.bfloat16, channels_last=True)
        rep.note(fp8_quantise(m))
        return m

    # cheap variants first, then the ones that compile
    variants: list[tuple[str, Callable[[], Any], float]] = [
        ("fp16 + channels-last UNet/ControlNet", lambda: clone(model, "cl", channels_last=True), 20),
        ("bf16 + channels-last", lambda: clone(model, "bf16", dtype=torch.bfloat16, channels_last=True), 20),
        ("FP8 (torchao) bf16 + channels-last", fp8, 60),
    ]
    if not args.skip_compile:
        def compiled(mode):
            def make():
                m = clone(model, f"compile-{mode}", channels_last=True)
                compile_regions(m, mode=mode, backend=compile_backend)
                return m
            return make
        variants += [
            ("fp16 + channels-last + torch.compile (inductor, default mode)", compiled(None), 150),
            ("fp16 + channels-last + torch.compile reduce-overhead (CUDA graphs)", compiled("reduce-overhead"), 150),
        ]
    best = ("today", pipe, s_tile)
    for name, make, cost in variants:
        if rep.left() < cost:
            rep.row({"case": name, "error": f"{rep.left():.0f} s of the budget left, needs ~{cost} s"})
            continue
        if args.smoke and name.startswith("FP8"):
            rep.row({"case": name, "error": "not run in the CPU smoke run"})
            continue
        try:
            t0 = time.perf_counter()
            vmodel = make()
            vpipe = MagicBokehPipeline(vmodel)
            vpipe.render(*_inputs(ph, pw), seed=SEED)  # compiles / warms every shape the photo uses
            _sync(device)
            t_ready = time.perf_counter() - t0
            s_v, st_v, peak_v = time_strip(vpipe, device, 8, args.repeats)
            photo_v, img_v, _ = time_photo(vpipe, device, ph, pw, args.repeats)
            row = {"case": name, "ms_per_tile": 1000 * s_v, "photo_s": photo_v, "peak_gb": peak_v, "stages": st_v,
                   "diff": _diff(img_v, ref_photo), "ready_s": t_ready}
            rep.row(row)
            rep.figure(f"{name}: ms/tile at batch 8", f"{1000 * s_v:.1f} ms ({s_tile / s_v:.2f}× today), photo "
                       f"{photo_v:.3f} s, ready in {t_ready:.0f} s, output vs today {row['diff']}")
            if s_v < best[2]:
                best = (name, vpipe, s_v)
            else:
                del vpipe, vmodel
        except ModuleNotFoundError as exc:
            rep.row({"case": name, "error": f"{exc.name} not installed"})
        except Exception as exc:  # noqa: BLE001 - one failing variant must not lose the others
            traceback.print_exc()
            rep.row({"case": name, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # 5. 12 MP end to end with depth: today and the fastest variant
    depth_model = build_depth_model(args.smoke, device=device, dtype=torch.float32)
    if depth_model is None:
        rep.note("transformers is not installed: the 12 MP figures use a synthetic disparity (no depth time)")
    runs = [("today", pipe, s_tile)] + ([best] if best[0] != "today" else [])
    h12, w12 = sizes["mp12"]
    for label, pp, s_pp in runs:
        need = 10 + 3 * tile_count(h12, w12, tile) * (s_pp if math.isfinite(s_pp) else 0.1)
        if rep.left() < need:
            rep.note(f"12 MP end to end ({label}) skipped: {rep.left():.0f} s of the budget left, needs ~{need:.0f} s")
            continue
        try:
            end_to_end_12mp(pp, depth_model, device, sizes, 1)  # warm the depth model's shapes
            total, st = end_to_end_12mp(pp, depth_model, device, sizes, max(1, args.repeats - 1))
            rep.figure(f"12 MP ({w12}×{h12}, {tile_count(h12, w12, tile)} tiles) end to end incl. depth, {label}",
                       f"{total:.2f} s (depth {st['depth']:.2f}, encode {st.get('encode', 0):.2f}, denoise "
                       f"{st.get('denoise', 0):.2f}, decode {st.get('decode', 0):.2f}; goal ≤ {GOALS['mp12_s']} s)")
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            rep.note(f"12 MP end to end ({label}) failed: {type(exc).__name__}: {str(exc)[:200]}")
    rep.note("torch.compile is not allowed on ZeroGPU: use spaces.aoti_capture / aoti_compile / aoti_apply "
             "(ahead-of-time inductor) for the same regions there.")
    print(rep.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
