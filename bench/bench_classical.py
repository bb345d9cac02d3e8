"""Classical renderer: speed in units of one disc convolution, bokeh rim width, seam residual.

Everything is measured in one run, for the renderer as it is now ("after") and as it was at
--baseline ("before", loaded with ``git show``):

1. Speed. 1280x800, K = 32, focus 0.5, --threads OpenCV threads, on a wavy ground plane, a
   cluttered random-blob field and the same field cut into 9 depth steps (terraced). Each render is
   divided by ONE full-frame 3-channel float32 ``cv2.filter2D`` with a radius-32 disc, timed
   interleaved with the renders (median of --runs), so host load hits all alike.
2. Rim. A single bright pixel at CoC radius 4, 6, 10, 20, 32 px (disc) and 20 px (hexagon): rim width
   (mean distance from the 50 % to the 10 % contour), radius, light kept.
3. Seams. max |out - median5(out)| (8-bit levels) inside smooth in-focus surfaces: the README's
   synthetic example (focus 218,470, K = 24, the red sphere) and a shaded sphere in front of a far
   plane (K = 24), with and without highlight boost; the input's own value alongside.
4. CLI. A 12 MP photo (the synthetic example upscaled to 4000x3000 with its disparity) through
   ``python -m magicbokeh render ... --K 32`` in a fresh process, wall time (median of --cli-runs),
   the compiled renderer's cache warmed first (a fresh machine compiles it once, ~15 s).

Usage: python bench/bench_classical.py [--runs 5] [--threads 2] [--baseline COMMIT] [--cli-runs 3]
       [--skip-cli] [--out bench/results_classical.md]
Results go into a marked block of --out; anything outside the block (notes) is kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # render_metrics: shared with the tests

#: The last commit before issue #16 (seams, soft rims, coarse grids).
BASELINE = "8177189"
BEGIN = "<!-- results: begin (written by the bench script; edit outside this block) -->"
END = "<!-- results: end -->"


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


def load_baseline(commit: str) -> types.ModuleType:
    """The renderer module (with its aperture kernels) as of ``commit``, read with ``git show``."""
    import magicbokeh  # noqa: F401  (the package its relative imports resolve to)

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
    lens_blur.DiskAperture = apertures.DiskAperture  # the baseline's own kernels
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


def scenes(h: int, w: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A smooth textured photo over three disparity maps (1 = nearest)."""
    import cv2

    rng = np.random.default_rng(0)
    img = cv2.resize(rng.random((h // 8, w // 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wavy = np.clip(yy / h + 0.04 * np.sin(xx / 37.0) * np.sin(yy / 53.0), 0, 1).astype(np.float32)
    clutter = cv2.resize(rng.random((16, 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    terraced = (np.round(clutter * 8) / 8).astype(np.float32)
    return {
        "wavy ground plane": (img, wavy),
        "cluttered (random blobs)": (img, clutter),
        "terraced (9 depth steps)": (img, terraced),
    }


def speed(old, runs: int) -> list[str]:
    import cv2

    from magicbokeh.apertures import DiskAperture
    from magicbokeh.lens_blur import render_lens_blur

    lines = [
        "| scene, 1280x800, K = 32 | one r = 32 disc convolution | before | after | before / conv | after / conv |",
        "|---|---|---|---|---|---|",
    ]
    kernel = DiskAperture().kernel(32.0)
    for name, (img, disp) in scenes(800, 1280).items():
        fns = {
            "conv": lambda: cv2.filter2D(img, -1, kernel),
            "before": lambda: old.render_lens_blur(img, disp, 0.5, 32),
            "after": lambda: render_lens_blur(img, disp, 0.5, 32),
        }
        t = median_times(fns, runs)
        lines.append(
            f"| {name} | {t['conv'] * 1e3:.1f} ms | {t['before']:.3f} s | {t['after']:.3f} s "
            f"| {t['before'] / t['conv']:.1f} | {t['after'] / t['conv']:.1f} |"
        )
        print(lines[-1], file=sys.stderr)
    return lines


def rims(old) -> list[str]:
    from magicbokeh.apertures import DiskAperture, PolygonAperture
    from magicbokeh.colour import srgb_to_linear
    from magicbokeh.lens_blur import render_lens_blur
    from render_metrics import disc_metrics, point_light_scene

    lines = [
        "| point light | rim 50 % -> 10 %, before | after | radius, before | after | light kept, before | after |",
        "|---|---|---|---|---|---|---|",
    ]
    cases = [(r, DiskAperture(), 0, "disc") for r in (4.0, 6.0, 10.0, 20.0, 32.0)] + [(20.0, PolygonAperture(6, 0.0), 6, "hexagon")]
    for r, aperture, blades, label in cases:
        img, disp, focus = point_light_scene(r, 32.0)
        cells = []
        for fn in (old.render_lens_blur, render_lens_blur):
            lin = srgb_to_linear(fn(img, disp, focus, 32.0, aperture=aperture))[..., 0]
            cells.append(disc_metrics(lin, blades))
        (rb, ra), (db, da), (lb, la) = zip(*cells)
        lines.append(
            f"| {label}, r = {r:g} px | {rb:.2f} px | {ra:.2f} px | {db:.2f} px | {da:.2f} px | {lb:.3f} | {la:.3f} |"
        )
    return lines


def seams(old) -> list[str]:
    import cv2
    from PIL import Image

    from magicbokeh.focus import focus_from_point
    from magicbokeh.lens_blur import render_lens_blur
    from render_metrics import seam_residual, shaded_sphere

    image = np.asarray(Image.open(ROOT / "examples/synthetic_scene.png").convert("RGB"), np.float32) / 255
    disparity = np.asarray(Image.open(ROOT / "examples/synthetic_scene_disparity.png"), np.float32) / 65535
    focus = focus_from_point(disparity, 218, 470)
    red = (np.abs(24 * (disparity - focus)) < 4) & (image[..., 0] > image[..., 1] + 0.15)
    sphere = cv2.erode(red.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    ball, ball_disp, inside = shaded_sphere()
    core = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    cases = [("synthetic example, red sphere (focus 218,470)", image, disparity, focus, sphere)]
    cases += [("shaded sphere, in focus (0.75)", ball, ball_disp, 0.75, core)]
    cases += [("shaded sphere, slightly defocused (0.70)", ball, ball_disp, 0.70, core)]
    lines = [
        "| surface, K = 24 | highlight boost | input (levels) | before (levels) | after (levels) |",
        "|---|---|---|---|---|",
    ]
    for name, img, disp, f, mask in cases:
        for boost in (False, True):
            values = [seam_residual(img)[mask].max()]
            for fn in (old.render_lens_blur, render_lens_blur):
                values.append(seam_residual(fn(img, disp, f, 24.0, highlight_boost=boost))[mask].max())
            lines.append(f"| {name} | {'on' if boost else 'off'} | " + " | ".join(str(v) for v in values) + " |")
    return lines


def cli(runs: int, threads: int) -> list[str]:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        photo, disp, out = Path(tmp, "photo.png"), Path(tmp, "disparity.png"), Path(tmp, "out.png")
        Image.open(ROOT / "examples/synthetic_scene.png").convert("RGB").resize((4000, 3000), Image.BICUBIC).save(photo)
        Image.open(ROOT / "examples/synthetic_scene_disparity.png").resize((4000, 3000), Image.BILINEAR).save(disp)
        cmd = [sys.executable, "-m", "magicbokeh", "render", str(photo), "--depth", str(disp)]
        cmd += ["--focus", "908,2203", "--K", "32", "-o", str(out)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads))
        from magicbokeh.lens_blur import warm_up_renderer

        warm_up_renderer()  # the compiled code is cached: the CLI runs time loading it, not compiling
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    return [
        "| 12 MP photo (4000x3000), whole CLI, K = 32 | wall time |",
        "|---|---|",
        f"| `python -m magicbokeh render ... --depth map.png --focus 908,2203 --K 32` | {statistics.median(times):.1f} s "
        f"(median of {runs}; runs {', '.join(f'{t:.1f}' for t in times)} s) |",
    ]


def write_block(path: Path, text: str) -> None:
    """Replace the marked results block of ``path`` with ``text`` (notes outside it stay); a file
    without the block gets it prepended. Written atomically."""
    old = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = block + ("\n\n" + old if old else "\n")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_classical.md")))
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    old = load_baseline(args.baseline)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Machine: {machine()}; OpenCV threads: {args.threads}; before = commit {args.baseline}, "
        f"after = the working tree; median of {args.runs} interleaved runs; "
        f"load average at start (1/5/15 min): {load} (other jobs share the cores).",
        "",
    ]
    lines += speed(old, args.runs) + [""]
    lines += rims(old) + [""]
    lines += seams(old)
    if not args.skip_cli:
        lines += [""] + cli(args.cli_runs, args.threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += ["", f"Load average at the end: {load}."]
    text = "\n".join(lines)
    print(text)
    write_block(Path(args.out), text)


if __name__ == "__main__":
    main()
