"""Partial occlusion: the classical renderer against the thin-lens ray tracer.

Three-layer procedural scenes (a textured far plane, a textured disc and a nearer textured disc,
complete RGBA layers: ``three_layer_scene`` in tests/layered_scenes.py) are composited all-in-focus
with their visible disparity, rendered by the classical renderer (before = --baseline, loaded from
git; after = the working tree, with and without the fill) and by the ray tracer
(``magicbokeh.data.raytrace.render_thin_lens``, the ground truth), focused on each layer in turn.
PSNR (sRGB) overall / away from occlusion edges / near them; "near" = within the CoC radius (+1 px)
of a depth discontinuity (``occlusion_edge_masks``), a frame margin of the largest CoC radius + 2 px
excluded everywhere. Speed: ``bench/bench_classical.py``.

Usage: python bench/bench_fill.py [--size 256] [--seeds 3] [--baseline COMMIT] [--out bench/results_fill.md]
Results go into a marked block of --out; anything outside the block (notes) is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # layered_scenes: test material, not the core

FOCI = {"far": 0.1, "middle": 0.5, "near": 0.9}


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
                "before": old.render_lens_blur(image, disparity, focus, k),
                "after, fill_hidden=False": render_lens_blur(image, disparity, focus, k, fill_hidden=False),
                "after": render_lens_blur(image, disparity, focus, k),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--k", type=float, default=24.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", default=None, help="default: bench_classical.BASELINE")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_fill.md")))
    args = parser.parse_args()
    import cv2

    from bench_classical import BASELINE, load_baseline, machine, write_block

    baseline = args.baseline or BASELINE
    cv2.setNumThreads(args.threads)
    old = load_baseline(baseline)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Machine: {machine()}; OpenCV threads: {args.threads}; before = commit {baseline}, after = the "
        f"working tree; load average at start (1/5/15 min): {load}.",
        "",
    ]
    lines += quality(args.size, args.seeds, args.k, old)
    text = "\n".join(lines)
    print(text)
    write_block(Path(args.out), text)


if __name__ == "__main__":
    main()
