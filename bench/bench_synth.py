"""Time the thin-lens ray tracer and the synthetic pair generator on CPU.

Usage: ``python bench/bench_synth.py [--size 512] [--repeats 2]``; prints a Markdown table
(bench/results_synth.md keeps the last run).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from magicbokeh.data.raytrace import MAX_SAMPLES, Layer, render_thin_lens, sample_count  # noqa: E402
from magicbokeh.data.synth import make_sample, write_sample  # noqa: E402


def _scene(size: int) -> list[Layer]:
    """Slanted textured background + two opaque rectangles (30 % and 40 % of the side)."""
    rng = np.random.default_rng(0)

    def layer(alpha: float) -> np.ndarray:
        x = np.ones((size, size, 4), np.float32)
        x[..., :3] = rng.random((size, size, 3))
        x[..., 3] = alpha
        return x

    bg = np.tile(np.linspace(0.0, 0.4, size, dtype=np.float32)[:, None], (1, size))
    fg1, fg2 = layer(0.0), layer(0.0)
    a, b = size // 5, size // 5 + int(0.4 * size)
    fg1[a:b, a:b, 3] = 1.0
    fg2[2 * a : 2 * a + int(0.3 * size), 2 * a : 2 * a + int(0.3 * size), 3] = 1.0
    return [Layer(layer(1.0), bg), Layer(fg1, 0.6), Layer(fg2, 1.0)]


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median (wall seconds, process CPU seconds, all threads) over ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    size, reps = args.size, args.repeats
    layers = _scene(size)
    rows = []
    for focus, k in ((1.0, 32.0), (0.6, 32.0), (0.0, 32.0), (0.0, 16.0), (0.0, 8.0)):
        max_r = max(k * float(np.max(np.abs(np.asarray(l.disparity) - focus))) for l in layers)
        n = min(sample_count(max_r), MAX_SAMPLES)
        secs = _time(lambda: render_thin_lens(layers, focus, k), reps)
        rows.append((f"render_thin_lens, 3 layers, K={k:g}, focus={focus:g} (max CoC {max_r:.0f} px)", n, secs))
    secs = _time(lambda: make_sample(0, 0, size=size), reps)
    rows.append(("make_sample (procedural scene + AIF + ray trace)", "-", secs))
    with tempfile.TemporaryDirectory() as tmp:
        secs = _time(lambda: write_sample(tmp, 0, 0, size=size), reps)
    rows.append(("write_sample (+ Real-ESRGAN LQ + 6 PNGs + npy + meta)", "-", secs))
    print(f"CPU: {platform.processor() or platform.machine()}, size {size}x{size}, median of {reps}\n")
    print("| what | aperture samples | wall s | CPU s |\n|---|---|---|---|")
    for what, n, (wall, cpu) in rows:
        print(f"| {what} | {n} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
