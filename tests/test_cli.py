"""The CLI end to end: files, folders, JSON, saved maps, one-line errors with non-zero exits."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, textured
from magicbokeh.images import load_map, load_photo, save_png


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "magicbokeh", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


@pytest.fixture
def photo_and_map(tmp_path):
    img = textured(80, 120, seed=11)
    disp = np.tile(np.linspace(0, 1, 120, dtype=np.float32), (80, 1))
    return save_png(tmp_path / "photo.png", img), save_png(tmp_path / "disp.png", disp[::2, ::2], bits=16)


def test_render_with_depth_map_and_json(tmp_path, photo_and_map):
    photo, disp = photo_and_map
    out = tmp_path / "out.png"
    proc = run_cli(
        "render", str(photo), "-o", str(out), "--depth", str(disp), "--focus", "100,40", "--K", "24",
        "--shape", "polygon", "--blades", "5", "--save-depth", str(tmp_path / "d.png"),
        "--save-defocus", str(tmp_path / "m.png"), "--json",
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["input_size"] == [120, 80] and info["output_size"] == [120, 80]
    assert info["backend"] == "classical" and "supplied disparity map" in info["depth_source"]
    assert info["focus_point"] == [100, 40] and 0.75 < info["focus_disparity"] < 0.9
    assert load_photo(out).size == (120, 80)
    defocus = load_map(tmp_path / "m.png")
    assert defocus.shape == (80, 120) and defocus[:, 0].mean() > defocus[:, 100].mean()
    assert load_map(tmp_path / "d.png")[:, -1].mean() > 0.99


def test_folder_renders_every_image(tmp_path):
    src = tmp_path / "in"
    for i in range(2):
        save_png(src / f"p{i}.png", textured(40, 50, seed=i))
    proc = run_cli("render", str(src), "-o", str(tmp_path / "out"), "--depth", "approximate", "--K", "8",
                   "--save-depth", str(tmp_path / "depth"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == ["p0.png", "p1.png"]
    assert load_map(tmp_path / "depth" / "p1.png").shape == (40, 50)
    assert len(json.loads(proc.stdout)["results"]) == 2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--K", "40"], "K=40 is outside"),
        (["--focus", "500,5"], "outside the 120x80 image"),
        (["--focus-mask", "/nonexistent/mask.png"], "no such file"),
        (["--depth", "/nonexistent/map.npy"], "no such file"),
        (["--backend", "warp-drive"], "unknown backend"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path, photo_and_map, args, needle):
    photo, _ = photo_and_map
    proc = run_cli("render", str(photo), "-o", str(tmp_path / "o.png"), "--depth", "approximate", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_truncated_image_exits_nonzero(tmp_path, photo_and_map):
    photo, _ = photo_and_map
    cut = tmp_path / "cut.png"
    cut.write_bytes(Path(photo).read_bytes()[:300])
    proc = run_cli("render", str(cut), "-o", str(tmp_path / "o.png"))
    assert proc.returncode == 2 and "cannot read image" in proc.stderr and "Traceback" not in proc.stderr


def test_official_low_quality_photos_render_with_supplied_depth(tmp_path, official_data):
    """The official EBB photos, focused on their salient mask, with a depth map built from it."""
    import cv2

    name = "EBB_LR_1321"
    mask = load_map(official_data / "mask" / f"{name}.png")
    # A supplied disparity map: subject near (soft mask edges kept), background a ramp.
    h, w = mask.shape
    disp = np.maximum(np.linspace(0.0, 0.5, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32), mask)
    np.save(tmp_path / "disp.npy", disp)
    out = tmp_path / f"{name}.png"
    proc = run_cli(
        "render", str(official_data / "inputs" / f"{name}.png"), "-o", str(out),
        "--depth", str(tmp_path / "disp.npy"), "--focus-mask", str(official_data / "mask" / f"{name}.png"),
        "--K", "32", "--json",
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["input_size"] == [1562, 1024] == info["output_size"]
    src = load_photo(official_data / "inputs" / f"{name}.png").rgb
    res = load_photo(out).rgb
    subject = cv2.erode((mask > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    far = disp < 0.3
    assert np.abs(res[subject] - src[subject]).mean() < 1 / 255  # the rose stays sharp
    # The noisy background is blurred: far less high-frequency energy than the input.
    lap = lambda im: np.abs(cv2.Laplacian(im.mean(axis=2), cv2.CV_32F))[far].mean()  # noqa: E731
    assert lap(res) < 0.3 * lap(src)
