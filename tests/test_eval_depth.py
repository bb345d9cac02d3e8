"""Depth evaluation (supplement Table 1): metrics with known answers, crops and caps, readers, CLI."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from magicbokeh.errors import MagicBokehError
from magicbokeh.eval import depth as evaldepth
from magicbokeh.eval.depth_data import open_dataset, load_sample
from magicbokeh.eval.depth_metrics import (
    DepthProtocol,
    align_to_depth,
    depth_metrics,
    evaluate_disparity,
    fit_scale_shift,
    kitti_garg_crop_mask,
    nyu_eigen_crop_mask,
    valid_mask,
)

HEADER_BOTH = (
    "| Model | Degrade AbsRel | Degrade δ1 | Clear AbsRel | Clear δ1 | Average AbsRel | Average δ1 | "
    "Degrade δ2 | Degrade δ3 | Degrade RMSE | Clear δ2 | Clear δ3 | Clear RMSE |"
)
HEADER_CLEAR = "| Model | Clear AbsRel | Clear δ1 | Clear δ2 | Clear δ3 | Clear RMSE |"


# ------------------------------------------------------------------------------------ helpers


def smooth_depth(h: int, w: int, seed: int, lo: float = 1.0, hi: float = 6.0) -> np.ndarray:
    """A smooth positive depth map in metres."""
    rng = np.random.default_rng(seed)
    small = rng.random((3, 4)).astype(np.float32)
    return (lo + (hi - lo) * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)).astype(np.float32)


def write_png16(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(arr.astype(np.uint16)))


def make_folder(root: Path, n: int = 4, h: int = 24, w: int = 32) -> dict[str, np.ndarray]:
    """A generic dataset: rgb/NAME.png (16-bit, red channel = normalised true disparity) and
    depth/NAME.npy (metres, even frames) or .png (16-bit millimetres, odd frames).

    Returns the ground truth as read back (PNG quantised to mm), by name.
    """
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    gts = {}
    for i in range(n):
        name = f"img{i}"
        depth = smooth_depth(h, w, seed=i)
        if i % 2 == 0:
            np.save(root / "depth" / f"{name}.npy", depth)
        else:
            mm = np.round(depth * 1000.0)
            write_png16(root / "depth" / f"{name}.png", mm)
            depth = (mm / 1000.0).astype(np.float32)
        gts[name] = depth
        disp = 1.0 / depth
        red = (disp - disp.min()) / (disp.max() - disp.min())
        rgb = np.stack([red, np.full_like(red, 0.5), 1.0 - red], -1)
        write_png16(root / "rgb" / f"{name}.png", np.round(rgb[..., ::-1] * 65535))
    return gts


def write_predictions(folder: Path, gts: dict[str, np.ndarray], *, noise: float = 0.0, seed: int = 0) -> Path:
    """Disparity files of an arbitrary affine scale (3 / depth + 0.7), optionally multiplied by noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, depth in gts.items():
        disp = 3.0 / depth + 0.7
        if noise:
            disp = disp * (1.0 + noise * rng.standard_normal(depth.shape)).astype(np.float32)
        np.save(folder / f"{name}.npy", disp.astype(np.float32))
    return folder


def table_rows(text: str) -> dict[str, list[float]]:
    """Model label -> numbers of its table row."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Model"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


# ------------------------------------------------------------------------------------ metrics


def test_fit_scale_shift_recovers_known_affine():
    rng = np.random.default_rng(0)
    x = rng.random((10, 12))
    mask = np.ones_like(x, bool)
    s, t = fit_scale_shift(x, 2.0 * x + 1.0, mask)
    assert s == pytest.approx(2.0, abs=1e-12) and t == pytest.approx(1.0, abs=1e-12)
    # Only masked pixels count: garbage elsewhere does not move the fit.
    y = 2.0 * x + 1.0
    y[0, :] = 1e6
    mask[0, :] = False
    assert fit_scale_shift(x, y, mask) == pytest.approx((2.0, 1.0), abs=1e-9)
    # A constant prediction carries no information: s = 0, t = the target's mean.
    assert fit_scale_shift(np.ones((4, 4)), np.arange(16.0).reshape(4, 4), np.ones((4, 4), bool)) == (0.0, 7.5)


def test_perfect_and_affine_predictions_score_perfectly():
    gt = smooth_depth(30, 40, seed=1).astype(np.float64)
    proto = DepthProtocol(1e-3, 10.0)
    for pred in (1.0 / gt, 0.02 / gt + 5.0, 7.0 / gt - 0.1):  # any scale and shift in disparity
        m = evaluate_disparity(pred, gt, proto)
        assert m["abs_rel"] < 1e-6 and m["rmse"] < 1e-5
        assert m["delta1"] == m["delta2"] == m["delta3"] == 1.0


def test_alignment_is_in_disparity_space_not_depth():
    gt = smooth_depth(30, 40, seed=2)
    proto = DepthProtocol(1e-3, 10.0)
    # An affine map of depth is not an affine map of disparity: alignment cannot undo it.
    m = evaluate_disparity(2.0 * gt + 1.0, gt, proto)
    assert m["abs_rel"] > 0.05


def test_delta_abs_rel_rmse_on_constructed_case():
    gt = np.ones((1, 6))
    pred = np.array([[1.0, 1.2, 1.3, 1.5, 1.9, 2.0]])
    m = depth_metrics(pred, gt, np.ones_like(gt, bool))
    assert m["delta1"] == pytest.approx(2 / 6)  # ratios < 1.25: 1.0, 1.2
    assert m["delta2"] == pytest.approx(4 / 6)  # < 1.5625: + 1.3, 1.5
    assert m["delta3"] == pytest.approx(5 / 6)  # < 1.953125: + 1.9
    assert m["abs_rel"] == pytest.approx(2.9 / 6)
    assert m["rmse"] == pytest.approx(np.sqrt((0.04 + 0.09 + 0.25 + 0.81 + 1.0) / 6))
    # The ratio is symmetric: 0.7 under-estimates by 1/0.7 = 1.43 -> in δ2 but not δ1.
    m2 = depth_metrics(np.array([[0.7]]), np.array([[1.0]]), np.ones((1, 1), bool))
    assert (m2["delta1"], m2["delta2"]) == (0.0, 1.0)


def test_caps_clip_predictions_and_ignore_out_of_range_truth():
    proto = DepthProtocol(1e-3, 10.0)
    gt = np.array([[0.0, 20.0, np.nan, 5.0, 2.0, 1e-4]], np.float32)
    assert valid_mask(gt, proto).tolist() == [[False, False, False, True, True, False]]
    # Fit on the two valid pixels (exact); a pixel whose aligned disparity is negative is clipped to
    # the far cap, one with a huge disparity to the near cap.
    gt2 = np.array([[5.0, 2.0, 5.0, 5.0]])
    pred = np.array([[0.2, 0.5, -3.0, 1e6]])
    mask = np.array([[True, True, False, False]])
    depth = align_to_depth(pred, gt2, mask, min_depth=1e-3, max_depth=10.0)
    assert depth[0, :2] == pytest.approx([5.0, 2.0])
    assert depth[0, 2] == pytest.approx(10.0) and depth[0, 3] == pytest.approx(1e-3)
    # The range is part of the score: a far-away truth beyond the cap is not scored.
    assert evaluate_disparity(1.0 / gt2, gt2, DepthProtocol(1e-3, 4.0))["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(MagicBokehError, match="0 < min < max"):
        DepthProtocol(5.0, 1.0)


def test_eigen_crop_indexes():
    mask = nyu_eigen_crop_mask(480, 640)
    assert mask.sum() == (471 - 45) * (601 - 41)
    assert mask[45, 41] and mask[470, 600] and not mask[44, 41] and not mask[45, 40]
    assert not mask[471, 300] and not mask[300, 601]
    with pytest.raises(MagicBokehError, match="480x640"):
        nyu_eigen_crop_mask(240, 320)
    gt = np.full((480, 640), 3.0, np.float32)
    assert valid_mask(gt, DepthProtocol(1e-3, 10.0, "nyu_eigen")).sum() == 426 * 560


def test_garg_crop_indexes():
    mask = kitti_garg_crop_mask(370, 1224)
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    # int() truncates as in BTS/AdaBins: 0.99189189 * 370 = 366.99.. -> 366, 0.03594771 * 1224 = 43.99.. -> 43
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (151, 366, 43, 1180)
    mask = kitti_garg_crop_mask(375, 1242)
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


# ----------------------------------------------------------------------------- CLI, predictions


def test_predictions_end_to_end_ranks_models(tmp_path, capsys):
    gts = make_folder(tmp_path / "scenes")
    perfect = write_predictions(tmp_path / "perfect", gts)
    noisy = write_predictions(tmp_path / "noisy", gts, noise=0.1)
    worse = write_predictions(tmp_path / "worse", gts, noise=0.4, seed=1)
    out = tmp_path / "table.md"
    rc = evaldepth.main([
        "--data", str(tmp_path / "scenes"), "--model", f"predictions:{worse}", "--model", f"predictions:{perfect}",
        "--model", f"predictions:{noisy}", "--conditions", "clear", "-o", str(out), "-q",
    ])
    printed = capsys.readouterr().out
    assert rc == 0
    assert out.read_text(encoding="utf-8") == printed
    lines = printed.splitlines()
    assert lines[0] == "## scenes"
    assert lines[2] == HEADER_CLEAR
    assert lines[3] == "|---" * 6 + "|"
    assert "Images: 4 evaluated, 0 skipped." in lines
    rows = table_rows(printed)
    assert list(rows) == ["worse", "perfect", "noisy"]  # one row per model, in the order given
    assert rows["perfect"] == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert rows["perfect"][0] < rows["noisy"][0] < rows["worse"][0]  # AbsRel
    assert rows["perfect"][1] >= rows["noisy"][1] > rows["worse"][1]  # δ1
    assert rows["noisy"][4] < rows["worse"][4]  # RMSE
    for line in lines[4:7]:  # three decimals everywhere
        assert all(len(c.strip().split(".")[1]) == 3 for c in line.strip("|").split("|")[1:])


def test_degrade_clear_average_columns_from_condition_folders(tmp_path, capsys):
    gts = make_folder(tmp_path / "scenes", n=3)
    model = tmp_path / "model"
    write_predictions(model / "clear", gts)
    write_predictions(model / "degrade", gts, noise=0.2)
    same = write_predictions(tmp_path / "same", gts, noise=0.2, seed=3)  # no subfolders: both conditions
    rc = evaldepth.main(["--data", str(tmp_path / "scenes"), "--model", f"predictions:{model}",
                         "--model", f"predictions:{same}", "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    assert text.splitlines()[2] == HEADER_BOTH
    rows = table_rows(text)
    d_abs, d_d1, c_abs, c_d1, a_abs, a_d1 = rows["model"][:6]
    assert c_abs == 0.0 and c_d1 == 1.0 and d_abs > 0.02 and d_d1 < 1.0
    assert a_abs == pytest.approx((d_abs + c_abs) / 2, abs=1.5e-3)
    assert a_d1 == pytest.approx((d_d1 + c_d1) / 2, abs=1.5e-3)
    s = rows["same"]
    assert s[0] == s[2] == s[4] and s[1] == s[3] == s[5]  # same predictions for both conditions


def test_missing_mismatched_and_invalid_files_are_skipped_and_counted(tmp_path, capsys, caplog):
    root = tmp_path / "scenes"
    gts = make_folder(root, n=3)
    write_png16(root / "rgb" / "lonely.png", np.zeros((24, 32, 3)))  # no depth
    np.save(root / "depth" / "orphan.npy", np.ones((24, 32), np.float32))  # no rgb
    write_png16(root / "rgb" / "small.png", np.zeros((12, 16, 3)))  # size mismatch
    np.save(root / "depth" / "small.npy", np.ones((24, 32), np.float32))
    write_png16(root / "rgb" / "blank.png", np.zeros((24, 32, 3)))  # zero valid pixels
    np.save(root / "depth" / "blank.npy", np.zeros((24, 32), np.float32))
    preds = write_predictions(tmp_path / "p", gts)
    # One prediction missing: that frame is skipped for that model only.
    partial = write_predictions(tmp_path / "partial", {k: v for k, v in gts.items() if k != "img1"})
    caplog.set_level(logging.WARNING)
    rc = evaldepth.main(["--data", str(root), "--model", f"predictions:{preds}", "--model", f"predictions:{partial}",
                         "--conditions", "clear", "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "Images: 3 evaluated, 4 skipped (3 missing or mismatched file, 1 no valid ground truth)." in text
    assert "partial: 2 evaluated, 1 skipped (missing or unreadable prediction)." in text
    warnings = caplog.text
    assert "lonely" in warnings and "orphan" in warnings and "small" in warnings and "blank" in warnings
    assert "no valid ground-truth pixel" in warnings
    rows = table_rows(text)
    assert rows["partial"][:2] == [0.0, 1.0]


def test_folder_without_matching_files_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    write_png16(tmp_path / "rgb" / "a.png", np.zeros((8, 8, 3)))
    np.save(tmp_path / "depth" / "b.npy", np.ones((8, 8)))
    rc = evaldepth.main(["--data", str(tmp_path), "--model", f"predictions:{tmp_path}", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "no matching files" in err and "rgb/NAME" in err
    rc = evaldepth.main(["--data", str(tmp_path / "nope"), "--model", "x", "-q"])
    assert rc == 2 and "not a depth dataset" in capsys.readouterr().err
    rc = evaldepth.main(["--data", str(tmp_path), "--model", "x", "--conditions", "blurry", "-q"])
    assert rc == 2 and "--conditions" in capsys.readouterr().err
    (tmp_path / "depth" / "a.npy").write_bytes((tmp_path / "depth" / "b.npy").read_bytes())
    rc = evaldepth.main(["--data", str(tmp_path), "--model", str(tmp_path / "missing.pth"), "-q"])
    assert rc == 2 and "no such file or folder" in capsys.readouterr().err


def test_generic_depth_range_flags(tmp_path, capsys):
    gts = make_folder(tmp_path / "scenes", n=2)  # depths in 1..6 m
    preds = write_predictions(tmp_path / "p", gts, noise=0.3)
    args = ["--data", str(tmp_path / "scenes"), "--model", f"predictions:{preds}", "--conditions", "clear", "-q"]
    evaldepth.main(args)
    full = table_rows(capsys.readouterr().out)["p"]
    evaldepth.main([*args, "--max-depth", "3"])
    capped = table_rows(capsys.readouterr().out)["p"]
    assert capped != full
    # The CLI's range is the protocol's: same numbers as scoring each frame on 1e-3..3 m and averaging.
    proto = DepthProtocol(1e-3, 3.0)
    per_image = [evaluate_disparity(np.load(preds / f"{k}.npy"), gt, proto) for k, gt in gts.items()]
    expected = [np.mean([m[k] for m in per_image]) for k in ("abs_rel", "delta1", "delta2", "delta3", "rmse")]
    assert capped == pytest.approx(expected, abs=5.1e-4)
    rc = evaldepth.main([*args, "--max-depth", "0.5"])
    assert rc == 2 and "every frame was skipped" in capsys.readouterr().err


# ---------------------------------------------------------------------------- estimator models


class _RedChannelEstimator:
    """A stand-in model whose 'prediction' is the red channel (the fixtures store true disparity there)."""

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return rgb[..., 0].astype(np.float32)


def test_estimator_loaded_once_and_degrade_seeds(tmp_path, capsys, monkeypatch):
    import magicbokeh.depth as depth_mod

    make_folder(tmp_path / "scenes", n=3)
    calls: list[tuple[str, int]] = []

    def fake_get_estimator(source=None, *, input_size=518, device=None):
        calls.append((source, input_size))
        return _RedChannelEstimator()

    seeds: list[int] = []

    def fake_degrade(rgb, *, preset="realesrgan", scale=4.0, seed=0):
        assert preset == "realesrgan" and scale == 4.0
        seeds.append(seed)
        noise = np.random.default_rng(seed).normal(0, 0.05, rgb.shape)
        return np.clip(rgb + noise, 0, 1).astype(np.float32)

    monkeypatch.setattr(depth_mod, "get_estimator", fake_get_estimator)
    monkeypatch.setitem(sys.modules, "magicbokeh.degradation", types.SimpleNamespace(degrade=fake_degrade))
    rc = evaldepth.main(["--data", str(tmp_path / "scenes"), "--model", "dadepth", "--model", "small",
                         "--input-size", "28", "--seed", "100", "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    # get_estimator keeps one estimator per (model, input size) per process; --input-size reaches it.
    assert set(calls) == {("dadepth", 28), ("small", 28)}
    assert seeds == [100, 101, 102]  # base seed + frame index, computed once and shared by both models
    rows = table_rows(text)
    assert rows["dadepth"] == rows["small"]  # same inputs -> same scores
    d_abs, d_d1, c_abs, c_d1 = rows["dadepth"][:4]
    assert c_abs < 0.002 and c_d1 == 1.0 and d_abs > c_abs


def test_save_degraded_only(tmp_path, capsys, monkeypatch):
    make_folder(tmp_path / "scenes", n=2)
    monkeypatch.setitem(
        sys.modules, "magicbokeh.degradation",
        types.SimpleNamespace(degrade=lambda rgb, *, preset, scale, seed: (rgb * 0.5).astype(np.float32)),
    )
    rc = evaldepth.main(["--data", str(tmp_path / "scenes"), "--save-degraded", str(tmp_path / "deg"), "-q"])
    assert rc == 0 and capsys.readouterr().out == ""
    assert sorted(p.name for p in (tmp_path / "deg" / "scenes").iterdir()) == ["img0.png", "img1.png"]


def test_tiny_transformers_model(tmp_path, capsys, tiny_depth_model, monkeypatch):
    make_folder(tmp_path / "scenes", n=2, h=36, w=48)  # the x4 degradation needs sides >= 32
    conditions = "clear,degrade"
    rc = evaldepth.main(["--data", str(tmp_path / "scenes"), "--model", str(tiny_depth_model),
                         "--conditions", conditions, "--input-size", "28", "-q"])
    text, err = capsys.readouterr()
    assert rc == 0, err
    (label, row), = table_rows(text).items()
    assert label == str(tiny_depth_model)
    n_cond = len(conditions.split(","))
    assert len(row) == 5 * n_cond + (2 if n_cond == 2 else 0)
    assert 0.0 <= row[0] < 10 and 0.0 <= row[1] <= 1.0
    assert "Images: 2 evaluated, 0 skipped." in text


def test_workers_give_the_same_table(tmp_path, capsys):
    gts = make_folder(tmp_path / "scenes", n=3)
    preds = write_predictions(tmp_path / "p", gts, noise=0.2)
    args = ["--data", str(tmp_path / "scenes"), "--model", f"predictions:{preds}", "--conditions", "clear", "-q"]
    assert evaldepth.main(args) == 0
    one = capsys.readouterr().out
    assert evaldepth.main([*args, "--workers", "2"]) == 0
    assert capsys.readouterr().out == one


# ------------------------------------------------------------------------------- NYUv2, KITTI


def test_nyu_reader_and_protocol(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    scipy_io = pytest.importorskip("scipy.io")
    n, h, w = 3, 480, 640
    rgbs = np.zeros((n, h, w, 3), np.uint8)
    rgbs[:, :10, :20, 0] = 255  # red top-left block: orientation check
    depths = np.stack([smooth_depth(h, w, seed=k) for k in range(n)])
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:  # MATLAB v7.3 stores arrays transposed
        f["images"] = rgbs.transpose(0, 3, 2, 1)  # (N, 3, W, H)
        f["depths"] = depths.transpose(0, 2, 1)  # (N, W, H)
    scipy_io.savemat(tmp_path / "splits.mat", {"testNdxs": np.array([[1], [3]]), "trainNdxs": np.array([[2]])})
    ds = open_dataset(f"nyu:{tmp_path}")
    assert ds.info.name == "nyuv2" and [s.name for s in ds.samples] == ["0001", "0003"]
    assert (ds.info.protocol.crop, ds.info.protocol.max_depth) == ("nyu_eigen", 10.0)
    rgb, gt = load_sample(ds.info, ds.samples[1])
    assert rgb.shape == (h, w, 3) and gt.shape == (h, w)
    assert rgb[0, 0, 0] == 1.0 and rgb[0, 25, 0] == 0.0 and rgb[15, 0, 0] == 0.0
    np.testing.assert_array_equal(gt, depths[2])
    preds = tmp_path / "preds"
    preds.mkdir()
    for name, k in (("0001", 0), ("0003", 2)):
        disp = 1.0 / depths[k]
        disp[:45] = -5.0  # garbage outside the Eigen crop does not count
        np.save(preds / f"{name}.npy", disp)
    rc = evaldepth.main(["--data", f"nyu:{tmp_path}", "--model", f"predictions:{preds}", "--conditions", "clear", "-q"])
    text = capsys.readouterr().out
    assert rc == 0 and text.startswith("## nyuv2\n")
    assert table_rows(text)["preds"] == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert "Images: 2 evaluated, 0 skipped." in text


def test_nyu_missing_files_named(tmp_path, capsys):
    rc = evaldepth.main(["--data", f"nyu:{tmp_path}", "--model", f"predictions:{tmp_path}", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "nyu_depth_v2_labeled.mat" in err and "splits.mat" in err


def test_kitti_reader_split_formats_and_skips(tmp_path, capsys):
    root = tmp_path / "kitti"
    drive = "2011_09_26_drive_0002_sync"
    h, w = 40, 120
    gts = {}
    for frame in ("0000000069", "0000000070", "0000000071"):
        write_png16(root / "2011_09_26" / drive / "image_02" / "data" / f"{frame}.png", np.zeros((h, w, 3)))
        depth = smooth_depth(h, w, seed=int(frame))
        raw = np.round(depth * 256.0)
        raw[:5] = 0  # sparse: invalid pixels
        if frame != "0000000071":  # 71 has no annotated depth
            write_png16(root / "data_depth_annotated" / "val" / drive / "proj_depth" / "groundtruth" / "image_02"
                        / f"{frame}.png", raw)
        gts[f"{drive}_image_02_{frame}"] = (raw / 256.0).astype(np.float32)
    split = tmp_path / "split.txt"
    split.write_text(
        f"2011_09_26/{drive}/image_02/data/0000000069.png "
        f"{drive}/proj_depth/groundtruth/image_02/0000000069.png 721.5\n"
        f"2011_09_26/{drive} 70 l\n"
        f"2011_09_26/{drive}/image_02/data/0000000071.png None 721.5\n"
        f"2011_09_26/{drive}/image_02/data/0000000099.png None 721.5\n"
    )
    rc = evaldepth.main(["--data", f"kitti:{root}", "--model", "x", "-q"])
    assert rc == 2 and "eigen_test_files.txt" in capsys.readouterr().err
    ds = open_dataset(f"kitti:{root}", split_file=str(split))
    assert ds.info.protocol.crop == "kitti_garg" and ds.info.protocol.max_depth == 80.0
    assert [s.name for s in ds.samples] == [f"{drive}_image_02_0000000069", f"{drive}_image_02_0000000070"]
    assert sorted(r for _, _, r in ds.skipped) == ["missing or mismatched file", "no annotated ground truth"]
    _, gt = load_sample(ds.info, ds.samples[0])
    np.testing.assert_allclose(gt, gts[ds.samples[0].name])
    preds = tmp_path / "preds"
    preds.mkdir()
    for name, gt in gts.items():
        disp = np.where(gt > 0, 1.0 / np.maximum(gt, 1e-3), 0.0).astype(np.float32)
        disp[:16] = -5.0  # garbage above the Garg crop (rows from int(0.40810811 * 40) = 16) does not count
        np.save(preds / f"{name}.npy", disp)
    rc = evaldepth.main(["--data", f"kitti:{root}", "--split-file", str(split), "--model", f"predictions:{preds}",
                         "--conditions", "clear", "-q"])
    text = capsys.readouterr().out
    assert rc == 0 and text.startswith("## kitti\n")
    assert table_rows(text)["preds"] == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert "Images: 2 evaluated, 2 skipped (1 missing or mismatched file, 1 no annotated ground truth)." in text
    # --limit counts entries of the split list, skips included
    rc = evaldepth.main(["--data", f"kitti:{root}", "--split-file", str(split), "--model", f"predictions:{preds}",
                         "--conditions", "clear", "--limit", "1", "-q"])
    assert "Images: 1 evaluated, 0 skipped." in capsys.readouterr().out


# ------------------------------------------------------------------------ real (installed) data

# Middlebury 2014 "Motorcycle" calib.txt at full resolution (2964 x 1988); scikit-image ships the
# images downscaled x4, so focal length and doffs are divided by 4 (the baseline is unchanged).
MIDDLEBURY_MOTORCYCLE_FULL = {"f_px": 3979.911, "doffs_px": 124.343, "baseline_mm": 193.001}


def test_real_motorcycle_is_left_view_disparity_in_pixels_turned_into_metres():
    data = pytest.importorskip("skimage.data")
    left, right, disp = data.stereo_motorcycle()
    ds = open_dataset("real")
    assert [s.name for s in ds.samples] == ["middlebury2014_motorcycle"] and not ds.skipped
    assert (ds.info.protocol.min_depth, ds.info.protocol.max_depth, ds.info.protocol.crop) == (1e-3, 10.0, "none")
    rgb, depth = load_sample(ds.info, ds.samples[0])
    np.testing.assert_array_equal(rgb, left.astype(np.float32) / 255)

    # The ground truth is disparity of the left view in pixels: the left pixel (r, c) is the right
    # pixel (r, c - d). Photometric check on the real pair, against no shift and the wrong sign.
    rows, cols = np.nonzero(np.isfinite(disp))
    grey_l, grey_r = left.astype(np.float64).mean(2), right.astype(np.float64).mean(2)

    def mismatch(shift: np.ndarray) -> float:
        c = np.round(cols - shift).astype(int)
        ok = (c >= 0) & (c < disp.shape[1])
        return float(np.mean(np.abs(grey_l[rows[ok], cols[ok]] - grey_r[rows[ok], c[ok]])))

    d = disp[rows, cols]
    assert mismatch(d) < 0.4 * mismatch(np.zeros_like(d)) and mismatch(d) < 0.4 * mismatch(-d)

    # Depth Z = f B / (d + doffs) at this size; unknown disparity (inf, as in Middlebury's PFM) is invalid.
    cal = MIDDLEBURY_MOTORCYCLE_FULL
    expected = (cal["f_px"] / 4) * (cal["baseline_mm"] / 1000) / (disp.astype(np.float64) + cal["doffs_px"] / 4)
    finite = np.isfinite(disp)
    np.testing.assert_allclose(depth[finite], expected[finite], rtol=1e-4)
    assert np.isinf(disp[~finite]).all() and np.isnan(depth[~finite]).all() and 0.05 < (~finite).mean() < 0.1
    assert 2.0 < depth[finite].min() < 2.2 and 4.9 < depth[finite].max() < 5.1  # metres
    from magicbokeh.eval.depth_real import disparity_to_depth

    assert np.isnan(disparity_to_depth(np.array([np.inf, -np.inf, -40.0]), 1.0, 1.0, 31.0)).all()


def test_real_dataset_is_scored_with_the_table1_protocol(tmp_path, capsys):
    data = pytest.importorskip("skimage.data")
    _, _, disp = data.stereo_motorcycle()
    name = "middlebury2014_motorcycle"
    filled = np.where(np.isfinite(disp), disp, disp[np.isfinite(disp)].min())
    # Pixel disparity is affine in 1 / Z, so the disparity-space fit makes it exact.
    (tmp_path / "stereo").mkdir()
    np.save(tmp_path / "stereo" / f"{name}.npy", (0.01 * filled + 3.0).astype(np.float32))
    # Depth itself (far = large) is not affine in disparity: the fit cannot undo it (the scene
    # spans only 2.1-5.0 m, so it comes close, but not to zero).
    (tmp_path / "inverted").mkdir()
    np.save(tmp_path / "inverted" / f"{name}.npy", (1.0 / (filled + 31.086)).astype(np.float32))
    rc = evaldepth.main(["--data", "real", "--model", f"predictions:{tmp_path / 'stereo'}",
                         "--model", f"predictions:{tmp_path / 'inverted'}", "--conditions", "clear", "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    assert text.splitlines()[0] == "## real" and "Images: 1 evaluated, 0 skipped." in text
    rows = table_rows(text)
    assert rows["stereo"] == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert rows["inverted"][0] > 0.02 and rows["inverted"][4] > 0.1  # AbsRel, RMSE (m)


def test_real_dataset_without_its_packages_says_what_to_install(capsys, monkeypatch):
    import magicbokeh.eval.depth_real as depth_real

    monkeypatch.setattr(depth_real, "installed", lambda frame: False)
    assert evaldepth.main(["--data", "real", "--model", "predictions:" + str(Path(__file__).parent), "-q"]) == 2
    assert "pip install scikit-image" in capsys.readouterr().err
