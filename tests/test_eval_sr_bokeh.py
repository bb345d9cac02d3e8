"""Real-ISR (K = 0) and bokeh evaluation: PSNR/SSIM known values, both tools end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import textured
from magicbokeh.errors import MagicBokehError
from magicbokeh.eval import bokeh as eval_bokeh
from magicbokeh.eval import sr as eval_sr
from magicbokeh.eval.common import pyiqa_available
from magicbokeh.eval.image_metrics import psnr, rgb_to_y, ssim
from magicbokeh.images import save_png, to_uint8
from magicbokeh.pipeline import Focus, RenderSettings, render

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _u8(h: int, w: int, seed: int, lo: int = 0, hi: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, (h, w, 3)).astype(np.uint8)


def _write_u8(path: Path, img: np.ndarray) -> None:
    save_png(path, img.astype(np.float32) / 255.0)


def _table_rows(text: str) -> dict[str, list[str]]:
    """``{method: cells}`` of the Markdown table in ``text``."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _header(text: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith("| Method"))
    return [c.strip() for c in line.strip("|").split("|")]


# ------------------------------------------------------------------------------------------------
# PSNR / SSIM known values


def _ssim_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out window by window (11 x 11 Gaussian, σ 1.5, valid positions)."""
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + C1) * (2 * cov + C2)) / ((ma**2 + mb**2 + C1) * (va + vb + C2)))
    return float(np.mean(vals))


def test_identical_images_give_infinite_psnr_and_unit_ssim() -> None:
    img = _u8(24, 20, 0)
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert psnr(img, img, y_channel=True, crop_border=2) == math.inf


def test_constant_offset_psnr_matches_closed_form() -> None:
    img = _u8(20, 24, 1, hi=200)
    shifted = img + np.uint8(30)
    assert psnr(shifted, img) == pytest.approx(20 * math.log10(255 / 30), abs=1e-9)
    # On Y the offset is 30 * (65.481 + 128.553 + 24.966) / 255 = 30 * 219 / 255.
    assert psnr(shifted, img, y_channel=True) == pytest.approx(20 * math.log10(255 / (30 * 219 / 255)), abs=1e-9)


def test_psnr_of_known_mse() -> None:
    a = np.zeros((16, 16, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255² / 768
    assert psnr(a, b) == pytest.approx(10 * math.log10(768), abs=1e-9)


def test_ssim_of_constant_shift_matches_closed_form() -> None:
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 120, np.uint8)
    expected = (2 * 100 * 120 + C1) / (100**2 + 120**2 + C1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    # A textured image shifted by a constant: contrast-structure term 1, luminance from local means.
    tex = _u8(20, 22, 2, hi=200)
    got = ssim(tex + np.uint8(20), tex)
    ref = np.mean([_ssim_brute_force(tex[..., c] + 20.0, tex[..., c].astype(float)) for c in range(3)])
    assert got == pytest.approx(ref, abs=1e-10)
    assert got < 1.0


def test_ssim_matches_window_by_window_definition() -> None:
    a, b = _u8(19, 23, 3), _u8(19, 23, 4)
    ref = np.mean([_ssim_brute_force(a[..., c].astype(float), b[..., c].astype(float)) for c in range(3)])
    assert ssim(a, b) == pytest.approx(ref, abs=1e-10)
    ya, yb = rgb_to_y(a.astype(float)), rgb_to_y(b.astype(float))
    assert ssim(a, b, y_channel=True) == pytest.approx(_ssim_brute_force(ya, yb), abs=1e-10)


def test_ssim_against_scikit_image_when_installed() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _u8(32, 30, 5), _u8(32, 30, 6)
    ref = metrics.structural_similarity(
        a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)


def test_border_crop_and_float_quantisation() -> None:
    a = _u8(20, 20, 7)
    b = a.copy()
    b[:3] = 0
    b[:, -3:] = 255
    assert math.isfinite(psnr(a, b))
    assert psnr(a, b, crop_border=3) == math.inf
    # Float [0, 1] images are scored as their 8-bit rounding.
    f = a.astype(np.float32) / 255.0 + 0.001
    assert psnr(f, a) == math.inf
    with pytest.raises(MagicBokehError, match="shapes"):
        psnr(a, a[:10])
    with pytest.raises(MagicBokehError, match="border crop"):
        psnr(a, a, crop_border=10)


# ------------------------------------------------------------------------------------------------
# eval.sr


def _sr_folders(tmp_path: Path, n: int = 3, size: tuple[int, int] = (32, 40)) -> tuple[Path, Path]:
    lq, hq = tmp_path / "lq", tmp_path / "hq"
    for i in range(n):
        img = to_uint8(textured(*size, seed=i))
        _write_u8(lq / f"img{i}.png", img)
        _write_u8(hq / f"img{i}.png", img)
    return lq, hq


def test_sr_identity_at_k0_on_identical_pairs(tmp_path: Path, capsys) -> None:
    lq, hq = _sr_folders(tmp_path)
    out = tmp_path / "table.md"
    rc = eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "classical",
                       "--metrics", "psnr,ssim", "-o", str(out), "-q", "--name", "Toy"])
    assert rc == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    assert text.startswith("## Toy\n")
    assert _header(text) == ["Method", "PSNR ↑", "SSIM ↑", "Time (s)"]
    cells = _table_rows(text)["classical"]
    assert cells[:2] == ["inf", "1.0000"]
    assert float(cells[2]) >= 0.0
    assert "3 complete, 0 incomplete" in text and "classical: 3 evaluated, 0 skipped" in text
    assert "BT.601 Y channel" in text and "4-pixel border cropped" in text


def test_sr_noisy_hq_psnr_equals_direct_computation(tmp_path: Path, capsys) -> None:
    lq, hq = _sr_folders(tmp_path)
    rng = np.random.default_rng(9)
    expected_psnr, expected_ssim = [], []
    for i in range(3):
        clean = cv2.imread(str(lq / f"img{i}.png"))[..., ::-1]
        noisy = np.clip(clean.astype(int) + rng.integers(-12, 13, clean.shape), 0, 255).astype(np.uint8)
        _write_u8(hq / f"img{i}.png", noisy)
        mse = np.mean((clean.astype(float) - noisy.astype(float)) ** 2)
        expected_psnr.append(10 * math.log10(255**2 / mse))
        expected_ssim.append(ssim(clean, noisy))
    rc = eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "classical", "--rgb",
                       "--crop-border", "0", "--metrics", "ssim,psnr", "-q"])
    assert rc == 0
    cells = _table_rows(capsys.readouterr().out)["classical"]
    assert cells[0] == f"{np.mean(expected_psnr):.2f}"
    assert cells[1] == f"{np.mean(expected_ssim):.4f}"
    assert 20 < float(cells[0]) < 40


def test_sr_upsamples_small_lq_and_scores_predictions(tmp_path: Path, capsys) -> None:
    lq, hq, pred = tmp_path / "lq", tmp_path / "hq", tmp_path / "pred"
    for i in range(2):
        big = to_uint8(textured(48, 64, seed=10 + i))
        small = cv2.resize(big, (32, 24), interpolation=cv2.INTER_AREA)
        _write_u8(hq / f"x{i}.png", big)
        _write_u8(lq / f"x{i}.png", small)
        up = np.clip(cv2.resize(small.astype(np.float32) / 255, (64, 48), interpolation=cv2.INTER_CUBIC), 0, 1)
        save_png(pred / f"x{i}.png", up)  # the same bicubic upsampling, precomputed
    _write_u8(lq / "orphan.png", _u8(24, 32, 0))
    rc = eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "classical",
                       "--backend", f"Bicubic=predictions:{pred}", "--metrics", "psnr,ssim", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    rows = _table_rows(text)
    assert rows["classical"][:2] == rows["Bicubic"][:2]
    assert 15 < float(rows["classical"][0]) < 60
    assert rows["Bicubic"][2] == "n/a"
    assert "2 complete, 1 incomplete" in text and "skipped orphan: no HQ image" in text


def test_sr_predictions_missing_and_wrong_size_are_named(tmp_path: Path, capsys) -> None:
    lq, hq = _sr_folders(tmp_path)
    pred = tmp_path / "pred"
    _write_u8(pred / "img0.png", cv2.imread(str(hq / "img0.png"))[..., ::-1])
    _write_u8(pred / "img1.png", _u8(20, 20, 1))
    rc = eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", f"predictions:{pred}",
                       "--metrics", "psnr,ssim", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert _table_rows(text)["pred (predictions)"][:3] == ["inf", "1.0000", "n/a"]
    assert "pred (predictions): 1 evaluated, 2 skipped" in text
    assert "img1: size mismatch: output 20x20, ground truth 40x32" in text
    assert "img2: no prediction img2.*" in text


def test_sr_realsr_and_drealsr_layouts(tmp_path: Path, capsys) -> None:
    img = to_uint8(textured(32, 32, seed=3))
    test4 = tmp_path / "RealSR" / "Canon" / "Test" / "4"
    _write_u8(test4 / "Canon_001_HR.png", img)
    _write_u8(test4 / "Canon_001_LR4.png", img)
    _write_u8(test4 / "Canon_002_HR.png", img)
    _write_u8(tmp_path / "RealSR" / "Nikon" / "Test" / "4" / "Nikon_001_LR4.png", img)
    _write_u8(tmp_path / "RealSR" / "Nikon" / "Test" / "4" / "Nikon_001_HR.png", img)
    rc = eval_sr.main(["--data", f"realsr:{tmp_path / 'RealSR'}", "--backend", "classical",
                       "--metrics", "psnr", "-q"])
    text = capsys.readouterr().out
    assert rc == 0 and text.startswith("## RealSR (×4)")
    assert "2 complete, 1 incomplete" in text and "skipped Canon_002: no Canon_002_LR4" in text

    d = tmp_path / "DRealSR" / "Test_x4"
    _write_u8(d / "test_LR" / "DSC_0001_x4.png", img)
    _write_u8(d / "test_HR" / "DSC_0001_x1.png", img)
    pred = tmp_path / "drealsr-pred"
    _write_u8(pred / "DSC_0001_x4.png", img)  # named after the LR file: found through the alias
    rc = eval_sr.main(["--data", f"drealsr:{tmp_path / 'DRealSR'}", "--backend", f"predictions:{pred}",
                       "--metrics", "psnr", "-q"])
    text = capsys.readouterr().out
    assert rc == 0 and text.startswith("## DRealSR (×4)")
    assert _table_rows(text)["drealsr-pred (predictions)"][0] == "inf"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "classical"], "give --lq DIR and --hq DIR"),
        (["--backend", "classical", "--data", "foo:bar"], "realsr:PATH or drealsr:PATH"),
        (["--backend", "nope", "--metrics", "psnr"], "unknown backend 'nope'"),
        (["--backend", "classical", "--metrics", "psnr,sharpness"], "unknown metric(s) sharpness"),
        (["--backend", "predictions:/does/not/exist", "--metrics", "psnr"], "does not exist"),
        (["--backend", "classical", "--workers", "0", "--metrics", "psnr"], "--workers must be at least 1"),
    ],
)
def test_sr_bad_input_exits_2_with_one_line(tmp_path: Path, capsys, args, message) -> None:
    lq, hq = _sr_folders(tmp_path, n=1)
    if "--data" not in args and "give --lq" not in message:
        args = ["--lq", str(lq), "--hq", str(hq), *args]
    assert eval_sr.main([*args, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_sr_no_pairs_exits_2(tmp_path: Path, capsys) -> None:
    lq, hq = tmp_path / "lq", tmp_path / "hq"
    _write_u8(lq / "a.png", _u8(20, 20, 0))
    _write_u8(hq / "b.png", _u8(20, 20, 0))
    assert eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "classical", "-q"]) == 2
    assert "no LQ/HQ pairs found" in capsys.readouterr().err


def test_sr_magicbokeh_backend_without_weights_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from magicbokeh.backends import get_backend

    backend = get_backend("magicbokeh")
    if backend.availability().ok:
        pytest.skip("MagicBokeh weights are available on this machine")
    lq, hq = _sr_folders(tmp_path, n=1)
    assert eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "magicbokeh", "-q"]) == 2
    assert "backend 'magicbokeh' cannot run here" in capsys.readouterr().err


@pytest.mark.skipif(pyiqa_available(), reason="pyiqa is installed: the columns hold real values")
def test_optional_metrics_read_not_installed_without_pyiqa(tmp_path: Path, capsys) -> None:
    lq, hq = _sr_folders(tmp_path, n=1)
    assert eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "classical", "-q",
                         "--metrics", "psnr,lpips,fid,musiq"]) == 0
    text = capsys.readouterr().out
    assert _header(text) == ["Method", "PSNR ↑", "LPIPS ↓", "MUSIQ ↑", "FID ↓", "Time (s)"]
    assert _table_rows(text)["classical"][:4] == ["inf", "not installed", "not installed", "not installed"]
    assert "LPIPS, MUSIQ, FID: not installed; install the metrics extra: pip install pyiqa" in text


def _without_time(text: str) -> list[str]:
    return [ln.rsplit("|", 2)[0] if ln.startswith("|") else ln for ln in text.splitlines()]


def test_workers_2_gives_the_same_table_as_workers_1(tmp_path: Path, capsys) -> None:
    lq, hq = _sr_folders(tmp_path, n=4)
    rng = np.random.default_rng(4)
    for i in range(4):
        noisy = np.clip(to_uint8(textured(32, 40, seed=i)) + rng.integers(0, 9, (32, 40, 3)), 0, 255)
        _write_u8(hq / f"img{i}.png", noisy.astype(np.uint8))
    base = ["--lq", str(lq), "--hq", str(hq), "--backend", "classical", "--metrics", "psnr,ssim", "-q"]
    assert eval_sr.main([*base, "--workers", "1"]) == 0
    one = capsys.readouterr().out
    assert eval_sr.main([*base, "--workers", "2"]) == 0
    two = capsys.readouterr().out
    assert _without_time(one) == _without_time(two)
    assert math.isfinite(float(_table_rows(one)["classical"][0]))


# ------------------------------------------------------------------------------------------------
# eval.bokeh


def _synthetic(tmp_path: Path, n: int = 3) -> Path:
    """A tiny synthetic-layout folder whose ground truth is the classical renderer's output."""
    root = tmp_path / "synth"
    for sub in ("disparity", "meta"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        aif = to_uint8(textured(36, 44, seed=20 + i))
        lq = np.clip(aif.astype(int) + 10, 0, 255).astype(np.uint8)
        # Sample 1 stores a map that is not [0, 1]-normalised; its focus is in the map's units.
        disp = np.tile(np.linspace(0.2, 0.6 if i == 1 else 1.0, 44, dtype=np.float32), (36, 1))
        focus = 0.4 if i == 1 else 0.3 + 0.2 * i
        lo, hi = float(disp.min()), float(disp.max())
        k = 6.0 + 4 * i
        _write_u8(root / "aif" / f"s{i}.png", aif)
        _write_u8(root / "lq" / f"s{i}.png", lq)
        np.save(root / "disparity" / f"s{i}.npy", disp)
        gt = render(aif, depth=disp, focus=Focus.disparity((focus - lo) / (hi - lo)),
                    settings=RenderSettings(k=k, backend="classical")).image
        save_png(root / "bokeh" / f"s{i}.png", gt)
        (root / "meta" / f"s{i}.json").write_text(json.dumps({"K": k, "focus_disparity": focus, "seed": i}))
    return root


def test_bokeh_synthetic_layout_classical_reproduces_its_ground_truth(tmp_path: Path, capsys) -> None:
    root = _synthetic(tmp_path)
    rc = eval_bokeh.main(["--data", str(root), "--input", "aif", "--backend", "classical",
                          "--backend", f"GT=predictions:{root / 'bokeh'}", "--metrics", "psnr,ssim", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    rows = _table_rows(text)
    assert rows["classical"][:2] == ["inf", "1.0000"]
    assert rows["GT"] == ["inf", "1.0000", "n/a"]
    assert "RGB (3 channels" in text and "no border crop" in text
    assert "backend input aif/" in text


def test_bokeh_synthetic_lq_input_and_wrong_focus_give_finite_psnr(tmp_path: Path, capsys) -> None:
    root = _synthetic(tmp_path)
    assert eval_bokeh.main(["--data", str(root), "--backend", "classical", "--metrics", "psnr", "-q"]) == 0
    lq_psnr = float(_table_rows(capsys.readouterr().out)["classical"][0])
    assert 20 < lq_psnr < 60  # lq = aif + 10 everywhere, blurred: finite
    # A wrong focal plane in the meta files is visible in the score.
    for meta in (root / "meta").glob("*.json"):
        data = json.loads(meta.read_text())
        data["focus_disparity"] = 1.0 - data["focus_disparity"] + 0.05
        meta.write_text(json.dumps(data))
    assert eval_bokeh.main(["--data", str(root), "--input", "aif", "--backend", "classical",
                            "--metrics", "psnr", "-q"]) == 0
    assert math.isfinite(float(_table_rows(capsys.readouterr().out)["classical"][0]))


def test_bokeh_missing_files_are_counted_and_named(tmp_path: Path, capsys) -> None:
    root = _synthetic(tmp_path)
    (root / "meta" / "s1.json").unlink()
    (root / "meta" / "s2.json").write_text(json.dumps({"focus_disparity": 0.5}))
    rc = eval_bokeh.main(["--data", str(root), "--input", "aif", "--backend", "classical",
                          "--metrics", "psnr", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "1 complete, 2 incomplete" in text
    assert "skipped s1: missing meta/s1.json" in text
    assert "skipped s2: meta file s2.json has no 'K' key" in text
    assert _table_rows(text)["classical"][0] == "inf"


def test_bokeh_ebb_layout_with_masks(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ebb"
    disp = np.tile(np.linspace(0, 1, 40, dtype=np.float32)[:, None], (1, 48))
    mask = np.zeros((40, 48), np.float32)
    mask[28:, :] = 1.0  # subject: the near rows
    for i in range(2):
        img = to_uint8(textured(40, 48, seed=30 + i))
        _write_u8(root / "input" / f"e{i}.png", img)
        save_png(root / "disparity" / f"e{i}.png", disp, bits=16)
        save_png(root / "mask" / f"e{i}.png", mask)
        # Render the ground truth from the stored (16-bit) map, as the evaluation reads it.
        gt = render(img, depth=str(root / "disparity" / f"e{i}.png"), focus=Focus.mask(mask),
                    settings=RenderSettings(k=12.0)).image
        save_png(root / "gt" / f"e{i}.png", gt)
    _write_u8(root / "input" / "e9.png", _u8(40, 48, 0))
    rc = eval_bokeh.main(["--data", str(root), "--K", "12", "--backend", "classical", "--metrics", "psnr", "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    assert _table_rows(text)["classical"][0] == "inf"
    assert "K = 12, focus from mask/NAME.png" in text
    assert "skipped e9: missing gt/e9.png, disparity/e9.npy|png" in text
    # At the default K = 32 the output no longer matches the K = 12 ground truth.
    assert eval_bokeh.main(["--data", str(root), "--backend", "classical", "--metrics", "psnr", "-q"]) == 0
    assert math.isfinite(float(_table_rows(capsys.readouterr().out)["classical"][0]))


def test_bokeh_unknown_or_empty_layout_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert eval_bokeh.main(["--data", str(tmp_path / "empty"), "--backend", "classical", "-q"]) == 2
    assert "neither the synthetic layout" in capsys.readouterr().err
    for sub in ("aif", "lq", "disparity", "bokeh", "meta"):
        (tmp_path / "s" / sub).mkdir(parents=True)
    assert eval_bokeh.main(["--data", str(tmp_path / "s"), "--backend", "classical", "-q"]) == 2
    assert "no complete samples" in capsys.readouterr().err


class _FakePyiqa:
    """Stands in for pyiqa with metrics of known value (NumPy inputs: no torch, no weights)."""

    __spec__ = __import__("importlib.machinery").machinery.ModuleSpec("pyiqa", None)

    @staticmethod
    def create_metric(name: str, device=None):
        if name == "lpips":  # full reference: mean absolute difference
            return lambda a, b: np.mean(np.abs(a - b))
        if name == "musiq":  # no reference: mean value x 100
            return lambda a: np.mean(a) * 100
        if name == "niqe":
            def fail(a):
                raise RuntimeError("image too small")
            return fail
        if name == "fid":  # whole set: files written to each folder
            return lambda d1, d2: len(list(Path(d1).iterdir())) + len(list(Path(d2).iterdir())) / 10
        raise RuntimeError(f"no weights for {name}")


def test_optional_metrics_go_through_pyiqa_when_installed(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    from magicbokeh.eval import common

    monkeypatch.setitem(sys.modules, "pyiqa", _FakePyiqa)
    monkeypatch.setattr(common, "_PYIQA_METRICS", {})
    monkeypatch.setattr(common, "_device", lambda: "cpu")
    monkeypatch.setattr(common, "_to_tensor", lambda im: im.astype(np.float64) / 255.0)
    lq, hq = _sr_folders(tmp_path, n=3)
    pred = tmp_path / "pred"
    means, diffs = [], []
    for i in range(3):
        gt = cv2.imread(str(hq / f"img{i}.png"))[..., ::-1]
        shifted = np.clip(gt.astype(int) + 10, 0, 255).astype(np.uint8)
        _write_u8(pred / f"img{i}.png", shifted)
        means.append(shifted.mean() / 255 * 100)
        diffs.append(np.abs(shifted.astype(float) - gt).mean() / 255)
    rc = eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "classical", "--backend",
                       f"P=predictions:{pred}", "--metrics", "psnr,lpips,dists,niqe,musiq,fid", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    rows = _table_rows(text)
    # Columns: PSNR, LPIPS, DISTS, NIQE, MUSIQ, FID, Time.
    assert rows["classical"][1:3] == ["0.0000", "unavailable"]
    assert rows["P"][1] == f"{np.mean(diffs):.4f}"
    assert rows["P"][0] != "inf" and rows["P"][6] == "n/a"
    assert rows["P"][3] == "–"  # every NIQE call failed
    assert rows["P"][4] == f"{np.mean(means):.2f}"
    assert rows["P"][5] == "3.30"  # 3 outputs, 3 references
    assert "DISTS: pyiqa could not create the metric" in text
