"""Partial-occlusion fill: the classical renderer against the thin-lens ray tracer, and its speed.

1. Quality. Three-layer procedural scenes (a textured far plane, a textured disc and a nearer
   textured disc, complete RGBA layers: ``tests/layered_scenes.py: three_layer_scene``) are
   composited all-in-focus with their visible disparity, rendered by the classical renderer
   (baseline = the renderer before the fill, loaded from git; new without and with the fill) and
   by the ray tracer (``magicbokeh.data.raytrace.render_thin_lens``, the ground truth), focused on
   each layer in turn. PSNR (sRGB) overall / away from occlusion edges / near them; "near" = within
   the CoC radius (+1 px) of a depth discontinuity (``occlusion_edge_masks``), a frame margin of
   the largest CoC radius + 2 px excluded everywhere.
2. Speed. 1 MP, K = 32, each ``bench_classical`` scene, the three-layer scene at 1 MP and a
   terraced scene (depth edges in every layer, the fill's worst case): baseline vs new, runs
   interleaved, median of --runs, ratio measured in the same run.

Usage: python bench/bench_fill.py [--size 256] [--seeds 3] [--runs 7] [--threads 2]
       [--baseline COMMIT] [--out bench/results_fill.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # layered_scenes: test material, not the core

#: The last commit before the fill (renderer and apertures as they were).
BASELINE = "a7ae040"
FOCI = {"far": 0.1, "middle": 0.5, "near": 0.9}


def load_baseline(commit: str) -> types.ModuleType:
    """The renderer module (with its aperture kernels) as of ``commit``, read with ``git show``."""
    import magicbokeh

    def module(name: str) -> types.ModuleType:
        src = subprocess.run(
            ["git", "show", f"{commit}:magicbokeh/{name}.py"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        spec = importlib.util.spec_from_loader(f"magicbokeh._baseline_{name}", loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "magicbokeh"  # relative imports resolve to today's package
        sys.modules[spec.name] = mod  # dataclasses look their module up there
        exec(compile(src, f"{commit}:{name}.py", "exec"), mod.__dict__)
        return mod

    apertures = module("apertures")
    lens_blur = module("lens_blur")
    lens_blur.DiskAperture = apertures.DiskAperture  # the baseline's own (untrimmed) kernels
    assert magicbokeh is not None
    return lens_blur


def median_times(fns: dict, runs: int, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per function, the functions run interleaved so load changes hit all alike."""
    for fn in fns.values():
        fn()  # warm-up (kernel caches, allocator)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def quality(size: int, seeds: int, k: float, old) -> list[str]:
    from magicbokeh.data.raytrace import render_thin_lens
    from magicbokeh.lens_blur import render_lens_blur
    from layered_scenes import occlusion_edge_masks, psnr, three_layer_scene

    rows = {}
    for seed in range(seeds):
        layers, image, disparity = three_layer_scene(size, seed)
        for name, focus in FOCI.items():
            truth = render_thin_lens(layers, focus, k)
            interior, near = occlusion_edge_masks(disparity, focus, k)
            renders = {
                "baseline (before the fill)": old.render_lens_blur(image, disparity, focus, k),
                "new, fill_hidden=False": render_lens_blur(image, disparity, focus, k, fill_hidden=False),
                "new (fill)": render_lens_blur(image, disparity, focus, k),
            }
            for method, out in renders.items():
                scores = [psnr(out, truth, interior), psnr(out, truth, interior & ~near), psnr(out, truth, interior & near)]
                rows.setdefault((name, method), []).append(scores)
            print(f"seed {seed} focus {name}: done", file=sys.stderr)
    lines = [
        f"Three-layer scenes, {size} x {size} px, K = {k:g}, layers at disparity 0.1 / 0.5 / 0.9; "
        f"mean over {seeds} seeds (worst seed in brackets). PSNR in dB against the thin-lens ray tracer.",
        "",
        "| focus on | renderer | overall | away from edges | near edges |",
        "|---|---|---|---|---|",
    ]
    for (name, method), scores in rows.items():
        s = np.array(scores)
        cells = [f"{s[:, i].mean():.1f} ({s[:, i].min():.1f})" for i in range(3)]
        lines.append(f"| {name} layer | {method} | " + " | ".join(cells) + " |")
    return lines


def speed(runs: int, old, threads: int) -> list[str]:
    from bench_classical import scenes

    from magicbokeh.lens_blur import render_lens_blur
    from layered_scenes import three_layer_scene

    cases = dict(scenes(1024, 1024))
    _, image, disparity = three_layer_scene(1024, 0)
    cases["three layers (depth edges)"] = (image, disparity)
    # The fill's worst case: the cluttered field cut into 9 depth steps, edges in every layer.
    img, clutter = cases["cluttered (worst case)"]
    cases["terraced: 9 depth steps (fill everywhere)"] = (img, (np.round(clutter * 8) / 8).astype(np.float32))
    import cv2

    lines = [
        f"| scene, 1 MP, K = 32, focus 0.5 | baseline, wall ({threads} threads) | new (fill), wall | new / baseline, wall "
        "| baseline, CPU (1 thread) | new, CPU | new / baseline, CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (img, disp) in cases.items():
        fns = {
            "old": lambda: old.render_lens_blur(img, disp, 0.5, 32),
            "new": lambda: render_lens_blur(img, disp, 0.5, 32),
        }
        cv2.setNumThreads(threads)
        wall = median_times(fns, runs)
        # CPU time of one thread: the work done, much less sensitive to other jobs on the cores.
        cv2.setNumThreads(1)
        cpu = median_times(fns, runs, clock=time.process_time)
        cv2.setNumThreads(threads)
        lines.append(
            f"| {name} | {wall['old']:.3f} s | {wall['new']:.3f} s | {wall['new'] / wall['old']:.2f} "
            f"| {cpu['old']:.3f} s | {cpu['new']:.3f} s | {cpu['new'] / cpu['old']:.2f} |"
        )
        print(lines[-1], file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--k", type=float, default=24.0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_fill.md")))
    args = parser.parse_args()
    import cv2

    from bench_classical import machine

    cv2.setNumThreads(args.threads)
    old = load_baseline(args.baseline)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Machine: {machine()}; OpenCV threads: {args.threads}; baseline: {args.baseline}; "
        f"load average at start (1/5/15 min): {load} (other jobs share the cores).",
        "",
    ]
    if not args.skip_quality:
        lines += quality(args.size, args.seeds, args.k, old) + [""]
    if not args.skip_speed:
        lines += [
            f"Median of {args.runs} interleaved runs (baseline and new alternate, so load hits both alike); "
            "wall-clock time with OpenCV's threads, and CPU time (process time) with one thread.",
            "",
        ]
        lines += speed(args.runs, old, args.threads)
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
