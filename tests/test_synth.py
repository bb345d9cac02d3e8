"""Synthetic bokeh generator: layout, determinism, resumption, parallel engines, bad input."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from magicbokeh.data.synth import generate, main, make_sample, write_sample
from magicbokeh.errors import MagicBokehError

SIZE = 64
SEED = 7
NUM = 3
META_KEYS = {"seed", "index", "K", "focus_disparity", "layer_disparities", "sources"}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, NUM, SEED, size=SIZE, progress=False)
    return out


def test_layout_manifest_and_meta(dataset):
    ids = [f"{i:06d}" for i in range(NUM)]
    for sid in ids:
        for rel in (f"aif/{sid}.png", f"bokeh/{sid}.png", f"lq/{sid}.png", f"disparity/{sid}.npy", f"meta/{sid}.json"):
            assert (dataset / rel).is_file(), rel
        for layer in range(3):
            rgba = cv2.imread(str(dataset / "layers" / f"{sid}_{layer}.png"), cv2.IMREAD_UNCHANGED)
            assert rgba.shape == (SIZE, SIZE, 4) and rgba.dtype == np.uint8
        meta = json.loads((dataset / "meta" / f"{sid}.json").read_text())
        assert META_KEYS <= set(meta)
        assert meta["seed"] == SEED and meta["index"] == int(sid)
        assert 0.0 <= meta["K"] <= 32.0 and 0.0 <= meta["focus_disparity"] <= 1.0
        assert meta["sources"] == ["procedural"] * 3 and len(meta["layer_disparities"]) == 3
        assert "/" not in json.dumps(meta["sources"])  # no absolute paths
    rows = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(NUM))
    assert all((dataset / r["bokeh"]).is_file() and (dataset / r["lq"]).is_file() for r in rows)
    # The background is the farthest layer: complete and opaque.
    bg = cv2.imread(str(dataset / "layers" / "000000_0.png"), cv2.IMREAD_UNCHANGED)
    assert bg[..., 3].min() == 255


def test_disparity_spans_exactly_unit_range(dataset):
    for i in range(NUM):
        d = np.load(dataset / "disparity" / f"{i:06d}.npy")
        assert d.dtype == np.float32 and d.shape == (SIZE, SIZE)
        assert d.min() == 0.0 and d.max() == 1.0
        meta = json.loads((dataset / "meta" / f"{i:06d}.json").read_text())
        # The focus lies on a visible surface of the scene.
        assert np.abs(d - meta["focus_disparity"]).min() < 1e-6


def test_sample_physics_in_focus_region_is_sharp_and_lq_is_degraded():
    checked = 0
    for index in range(8):
        s = make_sample(SEED, index, size=SIZE)
        assert s.bokeh.shape == s.aif.shape == (SIZE, SIZE, 3)
        # Pixels on the focal plane whose neighbourhood (max CoC + margin) is all on it stay sharp.
        on_plane = (np.abs(s.disparity - s.focus_disparity) * s.k < 0.05).astype(np.uint8)
        reach = int(np.ceil(s.k)) + 3
        core = cv2.erode(on_plane, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)).astype(bool)
        if core.any():
            np.testing.assert_allclose(s.bokeh[core], s.aif[core], atol=2e-3)
            checked += 1
        off = np.abs(s.disparity - s.focus_disparity) * s.k > 4
        if off.sum() > 50:  # well out of focus: the render differs from the sharp image
            assert np.abs(s.bokeh[off] - s.aif[off]).mean() > 1e-3
    assert checked >= 1


def test_regenerating_one_index_alone_is_byte_identical(dataset, tmp_path):
    write_sample(tmp_path, SEED, 1, size=SIZE)
    alone = _files(tmp_path)
    assert alone and all(name.split("/")[-1].startswith("000001") for name in alone)
    full = _files(dataset)
    for name, data in alone.items():
        assert full[name] == data, name


def test_two_workers_equal_one_worker(dataset, tmp_path):
    generate(tmp_path, NUM, SEED, size=SIZE, workers=2, progress=False)
    assert _files(tmp_path) == _files(dataset)


@pytest.mark.slow
def test_ray_equals_local_processes(dataset, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        generate(tmp_path, NUM, SEED, size=SIZE, ray_address="local", progress=False)
    finally:
        ray.shutdown()
    assert _files(tmp_path) == _files(dataset)


def test_interrupted_generation_is_completed_by_rerun(dataset, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(dataset, out)
    (out / "meta" / "000001.json").unlink()
    (out / "bokeh" / "000001.png").unlink()
    (out / "aif" / ".000001.tmp999.png").write_bytes(b"half-written")  # a killed writer's leftover
    keep = {
        p: p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and "000001" not in p.name and p.name != "manifest.jsonl"
    }
    generate(out, NUM, SEED, size=SIZE, progress=False)
    assert {p: p.stat().st_mtime_ns for p in keep} == keep  # finished samples untouched
    assert _files(out) == _files(dataset)  # the missing sample restored exactly, leftovers gone


def test_rerun_with_other_seed_into_same_folder_is_refused(dataset, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(dataset, out)
    with pytest.raises(MagicBokehError, match="new --out"):
        generate(out, NUM, SEED + 1, size=SIZE, progress=False)


def _write_rgba(path: Path, size: tuple[int, int], colour, seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.zeros((h, w, 4), np.uint8)
    img[..., :3] = colour
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (yy - h / 2) ** 2 / (h / 2.5) ** 2 + (xx - w / 2) ** 2 / (w / 2.5) ** 2 < 1
    img[..., 3] = np.where(inside, 255, 0)
    img[..., :3] = np.clip(img[..., :3].astype(int) + rng.integers(-20, 20, (h, w, 3)), 0, 255)
    cv2.imwrite(str(path), img)


def test_foreground_and_background_folders(tmp_path, caplog):
    fg = tmp_path / "fg"
    fg.mkdir()
    _write_rgba(fg / "apple.png", (40, 30), (30, 40, 200), 1)
    _write_rgba(fg / "pear.png", (50, 50), (40, 200, 40), 2)
    cv2.imwrite(str(fg / "flat.jpg"), np.full((30, 30, 3), 128, np.uint8))  # no alpha
    bg = tmp_path / "bg"
    bg.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(bg / "field.png"), rng.integers(0, 255, (80, 100, 3), dtype=np.uint8))
    with caplog.at_level(logging.WARNING):
        rows = generate(tmp_path / "out", 2, SEED, size=SIZE, backgrounds=bg, foregrounds=fg, progress=False)
    assert any("flat.jpg" in r.message and "alpha" in r.message for r in caplog.records)
    for row in rows:
        assert row["sources"][0] == "field.png"
        assert set(row["sources"][1:]) <= {"apple.png", "pear.png"}
        d = np.load(tmp_path / "out" / row["disparity"])
        assert d.min() == 0.0 and d.max() == 1.0
        # The nearest surface (d = 1) shows one of the cut-outs' colours (BGR as written), not background noise.
        aif = cv2.imread(str(tmp_path / "out" / row["aif"])).astype(float)
        median = np.median(aif[d == 1.0], axis=0)
        assert min(np.abs(median - c).max() for c in ((30, 40, 200), (40, 200, 40))) < 30, median


def test_matte_folder_layout(tmp_path):
    fg = tmp_path / "fg"
    (fg / "images").mkdir(parents=True)
    (fg / "mattes").mkdir()
    cv2.imwrite(str(fg / "images" / "dog.jpg"), np.full((40, 40, 3), (20, 30, 220), np.uint8))
    matte = np.zeros((40, 40), np.uint8)
    matte[8:32, 10:30] = 255
    cv2.imwrite(str(fg / "mattes" / "dog.png"), matte)
    s = make_sample(SEED, 0, size=SIZE, foregrounds=fg)
    assert s.sources[1:] == ["images/dog.jpg", "images/dog.jpg"]
    assert s.disparity.min() == 0.0 and s.disparity.max() == 1.0


def test_small_background_is_rejected(tmp_path):
    bg = tmp_path / "bg"
    bg.mkdir()
    cv2.imwrite(str(bg / "tiny.png"), np.zeros((40, 90, 3), np.uint8))
    with pytest.raises(MagicBokehError, match=r"tiny.png \(90x40\).*lower --size"):
        generate(tmp_path / "out", 1, 0, size=SIZE, backgrounds=bg, progress=False)


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--num", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--num" in err and len(err.splitlines()) == 1
    assert main(["--out", str(tmp_path / "o"), "--num", "1", "--foregrounds", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--out", str(blocker), "--num", "1", "--size", "32", "--no-progress"]) == 2
    assert "choose a writable --out" in capsys.readouterr().err


def test_writer_trainer_and_evaluator_agree_on_the_layout(dataset):
    """One layout (magicbokeh.data.layout): every sample the generator wrote is found by both readers."""
    from magicbokeh.data import layout
    from magicbokeh.eval.bokeh import synthetic_samples
    from magicbokeh.train.magicbokeh_data import BokehPairs

    ids = [f"{i:06d}" for i in range(NUM)]
    assert [layout.sample_id(i) for i in range(NUM)] == ids
    assert layout.is_synthetic_layout(dataset)
    assert BokehPairs(dataset, resolution=SIZE).ids == ids
    samples, incomplete = synthetic_samples(dataset, "lq")
    assert incomplete == [] and [s.name for s in samples] == ids
    for s in samples:
        meta = json.loads((dataset / "meta" / f"{s.name}.json").read_text())
        assert (s.k, s.focus_disparity) == (meta["K"], meta["focus_disparity"])
        assert Path(s.input_path) == dataset / "lq" / f"{s.name}.png"
        assert Path(s.disparity_path) == dataset / "disparity" / f"{s.name}.npy"
    rows = [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]
    assert rows[1]["layers"] == ["layers/000001_0.png", "layers/000001_1.png", "layers/000001_2.png"]
    assert rows[1]["meta"] == "meta/000001.json" and rows[1]["disparity"] == "disparity/000001.npy"
