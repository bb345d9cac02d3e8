"""Cost of reading a phone photo's embedded depth vs reading the photo alone, on the shared files.

Usage: python bench/bench_embedded_depth.py [--runs 5] [--threads 2] [--out bench/results_embedded_depth.md]
For each file of ../shared/testdata/phone-depth with depth: median wall time of
``load_photo`` (the photo alone, what a render reads today) and of ``read_embedded_depth``
(photo to render + depth map at its size), with guided and with bilinear upsampling.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PHONE = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "phone-depth"
FILES = ("pug.heic", "gdepth_motorola_xt912.jpg")


def median_times(fns, runs: int) -> list[float]:
    """Median seconds of each function; runs are interleaved so background load hits all alike."""
    for fn in fns:
        fn()  # warm-up (imports, allocator, decoder plugins)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_embedded_depth.md")))
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    from bench_classical import machine
    from magicbokeh.depth.embedded import read_embedded_depth
    from magicbokeh.images import load_photo

    if not PHONE.is_dir():
        sys.exit(f"{PHONE} is not present; nothing to measure.")
    rows = []
    for name in FILES:
        path = PHONE / name
        info = read_embedded_depth(path)
        photo_s, guided_s, plain_s = median_times(
            [lambda: load_photo(path), lambda: read_embedded_depth(path), lambda: read_embedded_depth(path, guided=False)],
            args.runs,
        )
        w, h = info.disparity_native.shape[1], info.disparity_native.shape[0]
        rows.append(
            f"| `{name}` | {info.format} | {info.photo.size[0]}x{info.photo.size[1]} | {w}x{h} | "
            f"{photo_s:.3f} | {guided_s:.3f} ({guided_s / photo_s:.2f}x) | {plain_s:.3f} ({plain_s / photo_s:.2f}x) |"
        )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# Reading embedded depth (bench/bench_embedded_depth.py)",
            "",
            f"Machine: {machine()}; OpenCV threads: {args.threads}; median of {args.runs} interleaved runs after one warm-up.",
            "",
            "| file | format | photo | stored map | photo alone (s) | photo + depth, guided (s, ratio) "
            "| photo + depth, bilinear (s, ratio) |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "\"Photo alone\" is `images.load_photo` of the file (for the Lens Blur JPEG that is the phone's "
            "blurred primary); \"photo + depth\" is `read_embedded_depth`, which decodes the photo to render "
            "(for GDepth the original in `GImage:Data`) and the map, and brings the map to the photo's size.",
            "",
        ]
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
