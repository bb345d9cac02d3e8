"""Degradation speed: seconds per image for each preset at 512x512 and 1024x1024 (1 MP), scale 4.

Usage: python bench/bench_degradation.py [--runs 15] [--threads 1 2] [--out bench/results_degradation.md]
Each run uses a different seed (the Real-ESRGAN branches differ in cost), so the table reports the
median over seeds, plus the slowest run. Prints a markdown table and writes it into --out between
the ``<!-- bench_degradation:start -->`` / ``:end -->`` markers, so hand-written notes elsewhere in
the file survive a rerun (a file without the markers keeps its text below the new table).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench_classical import machine  # noqa: E402  (same folder: one description of the machine)


def photo(side: int) -> np.ndarray:
    """A smooth colourful texture with fine noise (so JPEG and Poisson see many distinct values)."""
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.random((side // 16, side // 16, 3)).astype(np.float32), (side, side),
                      interpolation=cv2.INTER_CUBIC)
    return np.clip(base + 0.05 * rng.standard_normal(base.shape, dtype=np.float32), 0, 1)


START, END = "<!-- bench_degradation:start -->", "<!-- bench_degradation:end -->"


def write_table(path: Path, table: str) -> None:
    """Put ``table`` between the markers in ``path``; everything outside them is kept as it is.

    Written to a temporary file and renamed, so an interrupted run never leaves half a file.
    """
    block = f"{START}\n{table.rstrip()}\n{END}"
    text = path.read_text() if path.exists() else ""
    if START in text and END in text and text.index(START) < text.index(END):
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = block + "\n" + ("\n" + text if text else "")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def times_over_seeds(fn, runs: int) -> list[float]:
    fn(runs)  # warm-up with a seed the timed runs do not use
    out = []
    for seed in range(runs):
        t0 = time.perf_counter()
        fn(seed)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    import cv2

    from magicbokeh.degradation import PRESETS, degrade

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="OpenCV thread counts to measure (1 = a DataLoader worker)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_degradation.md")))
    args = parser.parse_args()

    lines = [
        f"Machine: {machine()}; OpenCV {cv2.__version__}, NumPy {np.__version__}. Scale 4; median over "
        f"{args.runs} seeds (one run each) after a warm-up; other jobs may have shared the CPU.",
        "",
        "| preset | OpenCV threads | 512x512 median | 512x512 slowest | 1024x1024 median | 1024x1024 slowest |",
        "|---|---|---|---|---|---|",
    ]
    images = {side: photo(side) for side in (512, 1024)}
    for preset in PRESETS:
        for threads in args.threads:
            cv2.setNumThreads(threads)
            cells = []
            for side, img in images.items():
                t = times_over_seeds(lambda s: degrade(img, preset=preset, seed=s), args.runs)
                cells += [f"{statistics.median(t):.3f} s", f"{max(t):.3f} s"]
            lines.append(f"| {preset} | {threads} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_table(Path(args.out), text)


if __name__ == "__main__":
    main()
