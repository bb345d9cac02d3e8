"""Depth Anything timings: the official pipeline vs transformers' processor, DA depth, the converter.

    python bench/bench_depth.py [--repeats 5] [--models tiny,small,vitl] [--skip-convert]

Random weights (timing only; no download). For each model size it times, on a 1562x1024 photo
(the official test photos' size), one depth estimate per path, median of ``--repeats``:

* before: transformers' DPT processor + the stock model + ``post_process_depth_estimation``
  (the project's path until the official pipeline landed);
* after: :func:`magicbokeh.depth.depth_anything.predict_disparity` (official resize rule, upstream
  position embeddings, bilinear resize back), the one path the CLI, the app and evaluation use.

``--models vitl`` is DA depth's architecture (ViT-L, 335 M parameters). The converter benchmark
writes a random ViT-L checkpoint in the upstream layout (~1.3 GB) and times
``convert-dadepth`` in a child process, reporting its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from magicbokeh.depth.convert_dadepth import VITL_CONFIG, qkv_keys, rename_keys  # noqa: E402
from magicbokeh.depth.depth_anything import apply_upstream_position_embeddings, predict_disparity  # noqa: E402

SIZES = {
    "tiny": {"backbone_config": {"model_type": "dinov2", "hidden_size": 64, "num_hidden_layers": 4,
                                 "num_attention_heads": 1, "intermediate_size": 256, "patch_size": 14,
                                 "image_size": 518, "out_indices": [1, 2, 3, 4], "apply_layernorm": True,
                                 "reshape_hidden_states": False},
             "reassemble_hidden_size": 64, "neck_hidden_sizes": [16, 32, 64, 64], "fusion_hidden_size": 16},
    "small": {"backbone_config": {"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12,
                                  "num_attention_heads": 6, "intermediate_size": 1536, "patch_size": 14,
                                  "image_size": 518, "out_indices": [3, 6, 9, 12], "apply_layernorm": True,
                                  "reshape_hidden_states": False},
              "reassemble_hidden_size": 384, "neck_hidden_sizes": [48, 96, 192, 384], "fusion_hidden_size": 64},
    "vitl": VITL_CONFIG,
}


def build(size: str):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    torch.manual_seed(0)
    config = DepthAnythingConfig(**json.loads(json.dumps(SIZES[size])))
    return DepthAnythingForDepthEstimation(config).eval()


def processor():
    from transformers import DPTImageProcessor

    return DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                             do_pad=False, resample=3, image_mean=[0.485, 0.456, 0.406],
                             image_std=[0.229, 0.224, 0.225])


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_paths(size: str, repeats: int, rgb: np.ndarray) -> dict:
    from PIL import Image

    stock = build(size)
    patched = apply_upstream_position_embeddings(build(size))
    proc = processor()
    pil = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
    h, w = rgb.shape[:2]

    def before():
        inputs = proc(images=pil, return_tensors="pt")
        with torch.inference_mode():
            out = stock(**inputs)
        return proc.post_process_depth_estimation(out, target_sizes=[(h, w)])[0]["predicted_depth"].numpy()

    def after():
        return predict_disparity(patched, rgb)

    t_before, t_after = median_time(before, repeats), median_time(after, repeats)
    params = sum(p.numel() for p in stock.parameters())
    return {"model": size, "params_M": round(params / 1e6, 1), "before_s": t_before, "after_s": t_after}


def bench_convert() -> dict:
    """Random ViT-L in the upstream layout -> convert-dadepth in a child process (time, peak RSS)."""
    from safetensors.torch import load_file

    model = build("vitl")
    config = model.config
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as saved:
        model.save_pretrained(saved)  # file-format names, as the converter writes them
        hf_state = load_file(str(Path(saved) / "model.safetensors"))
    upstream = {src: hf_state[dst] for src, dst in rename_keys(config)}
    for src, dst in qkv_keys(config):
        prefix, param = dst.split("|")
        upstream[src] = torch.cat([hf_state[f"{prefix}.{n}.{param}"] for n in ("query", "key", "value")])
    del model, hf_state
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        pth = Path(tmp) / "DAdepth.pth"
        torch.save({"model": {"module." + k: v for k, v in upstream.items()}, "optimizer": {}, "epoch": 0}, pth)
        del upstream
        size_gb = pth.stat().st_size / 1e9
        # VmHWM is the child's own peak (ru_maxrss would include the parent's, inherited at fork).
        code = ("import re, sys, time; sys.path.insert(0, %r); t=time.perf_counter(); "
                "from magicbokeh.depth.convert_dadepth import convert_dadepth; convert_dadepth(%r, %r); "
                "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
                "print(time.perf_counter()-t, hwm)"
                % (str(REPO), str(pth), str(Path(tmp) / "out")))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seconds, rss_kb = out.stdout.split()[-2:]
    return {"checkpoint_GB": round(size_gb, 2), "convert_s": float(seconds), "peak_rss_GB": int(rss_kb) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="tiny,small,vitl")
    parser.add_argument("--skip-convert", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rgb = np.random.default_rng(0).random((1024, 1562, 3)).astype(np.float32)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print("| model | params | transformers processor (before) | official pipeline (after) | after / before |")
    print("|---|---|---|---|---|")
    for size in args.models.split(","):
        r = bench_paths(size, args.repeats, rgb)
        print(f"| {r['model']} | {r['params_M']} M | {r['before_s']:.3f} s | {r['after_s']:.3f} s | "
              f"{r['after_s'] / r['before_s']:.2f} |", flush=True)
    if not args.skip_convert:
        c = bench_convert()
        print(f"\nconvert-dadepth (random ViT-L, {c['checkpoint_GB']} GB .pth): {c['convert_s']:.1f} s, "
              f"peak RSS {c['peak_rss_GB']:.2f} GB")
    print(f"(peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB)")


if __name__ == "__main__":
    main()
