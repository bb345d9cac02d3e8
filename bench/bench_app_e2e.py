"""End-to-end benchmark of the app's render path with the diffusion backend.

Times the app's own ``/render`` handler (``app.render``) for the 1562×1024 official test photo
(``../shared/testdata/official-magicbokeh/inputs/EBB_LR_1321.png`` when present, else a
synthetic photo of that size) and a 12 MP (4000×3000) photo: time to result, per-stage times
(from the handler's JSON summary), peak memory (process RSS, CUDA allocator). Each photo is
rendered in-process (first call, then steady state) and, when gradio is installed, through the
real ``/render`` endpoint with gradio_client against a loopback launch. Without gradio the core
call the handler makes (:func:`magicbokeh.pipeline.render`) is timed instead.

The networks are full-size SD2.1 architectures with seeded random weights (fp16 on CUDA), or tiny
ones on the CPU with ``--smoke`` (the 1562×1024 photo scaled by 1/8 so its tile count matches, the
12 MP one by 1/16 to keep the check short); the depth model
is a random-weight Depth Anything V2 Small (tiny with ``--smoke``) saved to a temporary folder
and selected through ``MAGICBOKEH_DEPTH_MODEL``. Nothing is downloaded.

Usage::

    python bench/bench_app_e2e.py --out $OUT/results_app_e2e.md            # GPU machine
    python bench/bench_app_e2e.py --smoke --out /tmp/app_e2e_smoke.md      # CPU check
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
OFFICIAL_PHOTO = HERE.parent.parent / "shared" / "testdata" / "official-magicbokeh" / "inputs" / "EBB_LR_1321.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_backend(smoke: bool):
    """Register a ``magicbokeh`` backend whose pipeline holds the bench's random-weight model.

    Everything from the handler down to ``MagicBokehBackend.render`` and the tiled pipeline is the
    real code; only loading (which would need the published weights) is replaced.
    """
    import torch

    from bench_diffusion_gpu import build_today
    from magicbokeh.backends import Availability, register_backend
    from magicbokeh.diffusion.backend import MagicBokehBackend
    from magicbokeh.diffusion.pipeline import MagicBokehPipeline

    class _Args:
        pass

    args = _Args()
    args.smoke = smoke
    device = torch.device("cpu" if smoke else "cuda")
    model = build_today(args, device, torch.float32 if smoke else torch.float16)
    pipe = MagicBokehPipeline(model)

    class BenchBackend(MagicBokehBackend):
        def availability(self, options=None):
            return Availability(True, f"benchmark model, random weights ({model.describe()})", "benchmark")

        def pipeline(self, opts, progress=None):
            return pipe

    register_backend("magicbokeh", BenchBackend)
    return model, device


def prepare_depth(smoke: bool, folder: Path, device) -> str:
    """Save a random Depth Anything V2 (Small, or tiny) and select it for "auto" depth."""
    from bench_diffusion_common import build_depth_model

    model = build_depth_model(smoke)
    if model is None:
        return "approximate (transformers not installed)"
    model.save_pretrained(folder)
    os.environ["MAGICBOKEH_DEPTH_MODEL"] = str(folder)
    return f"Depth Anything V2 {'tiny' if smoke else 'Small'} (random weights) on {device.type}"


def photos(smoke: bool, folder: Path) -> list[tuple[str, Path]]:
    from PIL import Image

    from bench_diffusion_common import bench_image

    f = 8 if smoke else 1
    out = []
    if OFFICIAL_PHOTO.is_file():
        if smoke:
            small = folder / "EBB_LR_1321_small.png"
            Image.open(OFFICIAL_PHOTO).convert("RGB").resize((1562 // f, 1024 // f), Image.LANCZOS).save(small)
            out.append((f"EBB_LR_1321 ({1562 // f}×{1024 // f})", small))
        else:
            out.append(("EBB_LR_1321 (1562×1024)", OFFICIAL_PHOTO))
    else:
        img, _ = bench_image(1024 // f, 1562 // f)
        path = folder / "photo_1562.png"
        Image.fromarray((img * 255).round().astype("uint8")).save(path)
        out.append((f"synthetic {1562 // f}×{1024 // f}", path))
    g = 16 if smoke else 1  # smoke: 1/16 (40 tiles instead of 165) keeps the CPU check short
    img, _ = bench_image(3000 // g, 4000 // g)
    path = folder / "photo_12mp.jpg"
    Image.fromarray((img * 255).round().astype("uint8")).save(path, quality=92)
    out.append((f"synthetic 12 MP ({4000 // g}×{3000 // g})", path))
    return out


def _stages(info: dict) -> dict[str, float]:
    t = info.get("timings_s", {}) if isinstance(info, dict) else {}
    keep = ("decode", "resize", "depth", "render.encode", "render.denoise", "render.decode", "render", "total")
    return {k: t[k] for k in keep if k in t}


def _mem(device) -> tuple[float, float]:
    import torch

    from bench_diffusion_common import peak_rss_gb

    gpu = torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else float("nan")
    return peak_rss_gb(), gpu


def _reset_mem(device) -> None:
    import torch

    from bench_diffusion_common import reset_peak_rss

    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU, photos scaled by 1/8")
    p.add_argument("--repeats", type=int, default=2, help="steady-state renders per photo after the first")
    p.add_argument("--k", type=float, default=16.0)
    p.add_argument("--max-side", type=int, default=None,
                   help="processing size passed to the handler when it accepts max_side (default: none)")
    p.add_argument("--no-client", action="store_true", help="in-process only")
    args = p.parse_args(argv)

    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --smoke to check the script on a CPU")
    t_setup = time.perf_counter()
    model, device = prepare_backend(args.smoke)
    tmp = tempfile.TemporaryDirectory()
    depth_note = prepare_depth(args.smoke, Path(tmp.name) / "depth", device)
    cases = photos(args.smoke, Path(tmp.name))
    have_gradio = importlib.util.find_spec("gradio") is not None
    rows: list[dict] = []
    notes = [f"setup (model build, depth model, photos) {time.perf_counter() - t_setup:.0f} s", f"depth: {depth_note}"]

    if have_gradio:
        from PIL import Image

        import app

        params = inspect.signature(app.render).parameters
        extra = {"max_side": args.max_side} if args.max_side and "max_side" in params else {}
        if args.max_side and not extra:
            notes.append("app.render has no max_side parameter yet: photos processed at their own size")

        def in_process(path: Path) -> dict:
            _, _, info = app.render(Image.open(path), focus_x=None, focus_y=None, k=args.k, backend="magicbokeh",
                                    **extra)
            return info
    else:
        from magicbokeh.pipeline import RenderSettings, render

        notes.append("gradio is not installed: timing the core call the handler makes (pipeline.render)")

        def in_process(path: Path) -> dict:
            return render(str(path), settings=RenderSettings(k=args.k, backend="magicbokeh")).info()

    for label, path in cases:
        for attempt in range(1 + args.repeats):
            _reset_mem(device)
            t0 = time.perf_counter()
            info = in_process(path)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            rss, gpu = _mem(device)
            row = {"photo": label, "path": "handler in-process" if have_gradio else "core (no gradio)",
                   "call": "first" if attempt == 0 else "again (cached depth + latents)", "seconds": seconds, "rss_gb": rss, "gpu_gb": gpu,
                   "stages": _stages(info), "size": info.get("output_size"), "tiles_note": next(
                       (m for m in info.get("messages", []) if "tile(s)" in m), "")}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)

    if have_gradio and not args.no_client:
        from gradio_client import Client, handle_file

        import app

        port = _free_port()
        app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            for label, path in cases:
                for attempt in range(1 + min(1, args.repeats)):
                    _reset_mem(device)
                    t0 = time.perf_counter()
                    result = client.predict(image=handle_file(str(path)), focus_x=None, focus_y=None, k=args.k,
                                            backend="magicbokeh", api_name="/render", **extra)
                    seconds = time.perf_counter() - t0
                    info = result[-1] if isinstance(result, (list, tuple)) else {}
                    rss, gpu = _mem(device)
                    row = {"photo": label, "path": "/render via gradio_client", "call": "again (cached depth + latents)",
                           "seconds": seconds, "rss_gb": rss, "gpu_gb": gpu, "stages": _stages(info),
                           "size": info.get("output_size") if isinstance(info, dict) else None}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            app.demo.close()

    env = (f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}; torch {torch.__version__}; "
           f"Python {platform.python_version()}; model {model.describe()}"
           + (" — SMOKE RUN (tiny models, CPU, photos at 1/8 and 1/16 scale)" if args.smoke else ""))
    lines = ["## App end to end (`bench/bench_app_e2e.py`)", "", f"Machine: {env}. K = {args.k:g}, automatic focus.", "",
             "| photo | path | call | time to result (s) | stages (s) | peak RSS (GB) | peak GPU (GiB) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        st = ", ".join(f"{k} {v:.3f}" for k, v in r["stages"].items())
        gpu = "–" if r["gpu_gb"] != r["gpu_gb"] else f"{r['gpu_gb']:.2f}"
        lines.append(f"| {r['photo']} | {r['path']} | {r['call']} | {r['seconds']:.2f} | {st} | {r['rss_gb']:.2f} | {gpu} |")
    lines += [""] + [f"* {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows, "notes": notes}, indent=1))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
