"""SR stream of the MagicBokeh trainer follows Real-ESRGAN x4plus (``gt_usm: True``) by default: the
target is the unsharp-masked crop and the degradation starts from that sharpened crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magicbokeh.data import layout
from magicbokeh.degradation import unsharp_mask
from magicbokeh.train.magicbokeh_config import Config, load_config
from magicbokeh.train.magicbokeh_data import SRPairs
from magicbokeh.train.magicbokeh_loop import Trainer

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # the tiny config's resolution: the centred validation crop is the whole photo


def _photo(seed: int = 5) -> np.ndarray:
    """Blocks with hard edges plus mild noise: the unsharp mask changes it visibly."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.integers(30, 226, (8, 8, 3)), np.ones((SIZE // 8, SIZE // 8, 1)))
    return np.clip(blocks + rng.normal(0, 4, blocks.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path, np.ndarray]:
    photo = _photo()
    sr = tmp_path / "sr"
    sr.mkdir()
    Image.fromarray(photo).save(sr / "a.png")
    bokeh = tmp_path / "bokeh"
    sid = layout.sample_id(0)
    for kind in (layout.AIF, layout.BOKEH):
        path = layout.file_path(bokeh, kind, sid)
        path.parent.mkdir(parents=True)
        Image.fromarray(photo).save(path)
    disp = layout.file_path(bokeh, layout.DISPARITY, sid)
    disp.parent.mkdir(parents=True)
    np.save(disp, np.full((SIZE, SIZE), 0.5, np.float32))
    meta = layout.file_path(bokeh, layout.META, sid)
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({layout.META_K: 4.0, layout.META_FOCUS: 0.5}))
    return sr, bokeh, photo


def _hwc(tensor) -> np.ndarray:
    return tensor.numpy().transpose(1, 2, 0)


def test_sharpening_is_the_default_everywhere():
    assert Config().data.sharpen_target is True
    for name in ("train_magicbokeh.yaml", "train_tiny.yaml"):
        assert load_config(REPO / "configs" / name).data.sharpen_target is True, name


def test_target_is_the_unsharp_masked_crop_and_the_degradation_starts_from_it(folders):
    sr, _, photo = folders
    crop = photo.astype(np.float32) / np.float32(255.0)
    sharpened = unsharp_mask(crop)
    assert np.abs(sharpened - crop).max() > 0.05  # the reference really differs from the plain crop
    received = []

    def recording(rgb, rng):
        received.append(rgb.copy())
        return np.full_like(rgb, 0.25)

    item = SRPairs(sr, resolution=SIZE, degrade_fn=recording, train=False).item(0, -1)  # default: sharpen
    np.testing.assert_allclose(_hwc(item["target"]), sharpened, atol=1e-6)
    (seen,) = received
    np.testing.assert_allclose(seen, sharpened, atol=1e-6)
    np.testing.assert_array_equal(_hwc(item["input"]), 0.25)

    received.clear()
    plain = SRPairs(sr, resolution=SIZE, degrade_fn=recording, train=False, sharpen_target=False).item(0, -1)
    np.testing.assert_allclose(_hwc(plain["target"]), crop, atol=1e-6)
    np.testing.assert_allclose(received[0], crop, atol=1e-6)


def test_the_trainer_builds_its_sr_streams_from_the_config(folders, tmp_path):
    sr, bokeh, photo = folders
    crop = photo.astype(np.float32) / np.float32(255.0)
    for flag, expected in (("true", unsharp_mask(crop)), ("false", crop)):
        config = load_config(REPO / "configs" / "train_tiny.yaml",
                             [f"data.sr_dir={sr}", f"data.bokeh_dir={bokeh}", "data.val_samples=1",
                              f"data.sharpen_target={flag}"])
        datasets, val = Trainer(config, tmp_path / flag)._data(None)
        assert datasets["sr"].source.pairs.sharpen_target is (flag == "true")
        np.testing.assert_allclose(_hwc(val["isr"][0]["target"]), expected, atol=1e-6)
        # the bokeh target is a rendered lens blur and is never sharpened
        np.testing.assert_allclose(_hwc(val["bokeh"][0]["target"]), crop, atol=1e-6)
