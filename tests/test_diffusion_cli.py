"""``python -m magicbokeh render --backend magicbokeh`` end to end on the tiny local weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from diffusion_fixtures import scene, tiny_assets  # noqa: F401
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def test_cli_renders_with_the_magicbokeh_backend(tiny_assets, tmp_path):
    img, disp = scene(72, 100)
    photo = tmp_path / "photo.png"
    Image.fromarray((img * 255).round().astype(np.uint8)).save(photo)
    np.save(tmp_path / "disp.npy", disp)
    out = tmp_path / "out.png"
    # Offline, with the weights given only as flags: availability must honour the options.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MAGICBOKEH_CACHE_DIR": str(tmp_path / "cache")}
    for var in ("MAGICBOKEH_BASE", "MAGICBOKEH_CHECKPOINT"):
        env.pop(var, None)
    cmd = [
        sys.executable, "-m", "magicbokeh", "render", str(photo), "-o", str(out),
        "--backend", "magicbokeh", "--base", str(tiny_assets.base_dir), "--checkpoint", str(tiny_assets.ckpt_path),
        "--depth", str(tmp_path / "disp.npy"), "--focus-disparity", "0.9", "--K", "24",
        "--seed", "5", "--tile-batch", "2", "--dtype", "fp32", "--device", "cpu", "--color-fix", "adain", "--json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["backend"] == "magicbokeh"
    assert any("MagicBokeh on cpu fp32" in m and "seed 5" in m and "2 per pass" in m for m in info["messages"])
    result = np.asarray(Image.open(out))
    assert result.shape == (72, 100, 3)
    assert np.abs(result.astype(np.float32) / 255 - img).mean() > 0.01  # the model changed the photo
    assert (tmp_path / "cache" / "diffusion").is_dir()  # the converted-weights cache was written


def test_cli_reports_missing_weights_in_one_line(tmp_path):
    img, _ = scene(32, 32)
    photo = tmp_path / "photo.png"
    Image.fromarray((img * 255).astype(np.uint8)).save(photo)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MAGICBOKEH_CACHE_DIR": str(tmp_path / "cache"),
           "MAGICBOKEH_CHECKPOINT": str(tmp_path / "missing.pkl")}
    cmd = [sys.executable, "-m", "magicbokeh", "render", str(photo), "-o", str(tmp_path / "o.png"),
           "--backend", "magicbokeh", "--checkpoint", str(tmp_path / "missing.pkl"),
           "--depth", "approximate", "--focus-disparity", "0.5"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "checkpoint file not found" in proc.stderr and "Traceback" not in proc.stderr
