"""Bokeh-phase inputs of the MagicBokeh trainer: by default the all-in-focus photo is degraded afresh on
every draw (as the SR stream); ``bokeh_input: lq`` reads the fixed ``lq/`` copy unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magicbokeh.data import layout
from magicbokeh.train.magicbokeh_config import Config, load_config
from magicbokeh.train.magicbokeh_data import BokehPairs, DrawDataset, make_degrade_fn

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # crop = the whole image, so only the flip is random


def _png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


@pytest.fixture
def pair_dir(tmp_path) -> Path:
    """One pair in the synthetic layout: aif, an lq copy unlike any fresh degradation, disparity, bokeh, meta."""
    rng = np.random.default_rng(3)
    root = tmp_path / "bokeh"
    sid = layout.sample_id(0)
    _png(layout.file_path(root, layout.AIF, sid), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    _png(layout.file_path(root, layout.LQ, sid), np.full((SIZE, SIZE, 3), 77, np.uint8))
    _png(layout.file_path(root, layout.BOKEH, sid), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    disp = layout.file_path(root, layout.DISPARITY, sid)
    disp.parent.mkdir(parents=True)
    np.save(disp, np.tile(np.linspace(0, 1, SIZE, dtype=np.float32), (SIZE, 1)))
    meta = layout.file_path(root, layout.META, sid)
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({layout.META_K: 8.0, layout.META_FOCUS: 0.5}))
    return root


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


def _input(item) -> np.ndarray:
    return item["input"].numpy().transpose(1, 2, 0)


def test_default_is_a_fresh_degradation_per_draw_in_every_config():
    assert Config().data.bokeh_input == "degrade"
    for name in ("train_magicbokeh.yaml", "train_tiny.yaml"):
        assert load_config(REPO / "configs" / name).data.bokeh_input == "degrade", name


def test_two_draws_of_one_pair_get_two_degradations_of_its_aif(pair_dir):
    seen = []

    def recording(rgb, rng):
        seen.append(rgb.copy())
        return np.asarray(make_degrade_fn("realesrgan", 2.0)(rgb, rng))

    pairs = BokehPairs(pair_dir, resolution=SIZE, degrade_fn=recording)  # the default bokeh_input
    draws = DrawDataset(pairs, seed=0, stream="bokeh")
    first, second = draws[0], draws[1]  # one pair: draws 0 and 1 are the same index in epochs 0 and 1
    assert [draws.index_of(0)[0], draws.index_of(1)[0]] == [0, 0]
    aif = _rgb(layout.file_path(pair_dir, layout.AIF, layout.sample_id(0)))
    for got in seen:  # the degradation reads the all-in-focus crop (flipped or not), never lq/
        assert np.array_equal(got, aif) or np.array_equal(got, aif[:, ::-1])
    a, b = _input(first), _input(second)
    assert np.abs(a - b).mean() > 0.01  # two different degradations
    assert not np.allclose(a, 77 / 255, atol=0.05) and not np.allclose(b, 77 / 255, atol=0.05)
    # the same draw again is the same sample (a resumed run sees what the uninterrupted one saw)
    np.testing.assert_array_equal(_input(draws[1]), b)


def test_lq_reads_the_stored_copy_unchanged(pair_dir):
    lq = _rgb(layout.file_path(pair_dir, layout.LQ, layout.sample_id(0)))

    def never(rgb, rng):
        raise AssertionError("bokeh_input=lq must not degrade")

    pairs = BokehPairs(pair_dir, resolution=SIZE, bokeh_input="lq", degrade_fn=never)
    draws = DrawDataset(pairs, seed=0, stream="bokeh")
    for draw in (0, 1, 2):
        np.testing.assert_array_equal(_input(draws[draw]), lq)  # lq/ is uniform, so flips do not show
    val = BokehPairs(pair_dir, resolution=SIZE, bokeh_input="lq", train=False)
    np.testing.assert_array_equal(_input(val.item(0, -1)), lq)


def test_degrade_without_aif_names_the_lq_option(pair_dir):
    import shutil

    from magicbokeh.errors import MagicBokehError

    shutil.rmtree(pair_dir / layout.AIF)
    with pytest.raises(MagicBokehError, match="bokeh_input=lq"):
        BokehPairs(pair_dir, resolution=SIZE, degrade_fn=make_degrade_fn("realesrgan", 2.0))
