"""Classical renderer speed: 1 MP at K = 8, 16, 32 vs a naive per-pixel scatter on a small crop.

Usage: python bench/bench_classical.py [--runs 5] [--threads 2] [--out bench/results_classical.md]
Prints a markdown table (median of repeated runs) and writes it to --out.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def scenes(h: int, w: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A textured photo with a ground-plane ramp and with a cluttered (random-blob) disparity."""
    import cv2

    rng = np.random.default_rng(0)
    img = cv2.resize(rng.random((h // 8, w // 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    ramp = np.tile(np.linspace(0, 1, h, dtype=np.float32)[:, None], (1, w))
    clutter = cv2.resize(rng.random((16, 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return {"ground plane": (img, ramp), "cluttered (worst case)": (img, clutter)}


def median_time(fn, runs: int) -> float:
    fn()  # warm-up (kernel caches, allocator)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_classical.md")))
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    from magicbokeh.lens_blur import render_lens_blur
    from magicbokeh.lens_blur_reference import naive_scatter

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Machine: {machine()}; OpenCV threads: {args.threads}; median of {args.runs} runs; "
        f"load average at start (1/5/15 min): {load}.",
        "",
    ]
    lines += ["| scene (1024x1024 = 1.05 MP) | K = 8 | K = 16 | K = 32 |", "|---|---|---|---|"]
    for name, (img, disp) in scenes(1024, 1024).items():
        cells = [f"{median_time(lambda: render_lens_blur(img, disp, 0.5, k), args.runs):.3f} s" for k in (8, 16, 32)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    # Naive per-pixel scatter on a small crop, same K, same run.
    crop_img, crop_disp = (a[:64, :64] for a in scenes(1024, 1024)["ground plane"])
    crop_disp = np.ascontiguousarray(crop_disp * 0 + np.linspace(0, 1, 64, dtype=np.float32)[:, None])
    lines += ["", "| 64x64 crop, ground plane, K = 32 | time | per megapixel |", "|---|---|---|"]
    fast = median_time(lambda: render_lens_blur(crop_img, crop_disp, 0.5, 32), args.runs)
    slow = median_time(lambda: naive_scatter(crop_img, crop_disp, 0.5, 32), max(1, args.runs // 2))
    mp = 64 * 64 / 1e6
    lines.append(f"| layered renderer | {fast * 1e3:.1f} ms | {fast / mp:.2f} s |")
    lines.append(f"| naive per-pixel scatter (reference) | {slow * 1e3:.0f} ms | {slow / mp:.0f} s |")
    lines.append(f"| speed-up | {slow / fast:.0f}x | |")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
