"""DA-depth distillation crops at the field of view inference sees: the photo is resized as Depth
Anything's preprocessing resizes it (short side = the crop, cubic), then cropped."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from magicbokeh.errors import MagicBokehError
from magicbokeh.train import depth_distill as dd
from magicbokeh.train.depth_distill_config import RESUME_KEYS, DistillConfig, check_config
from magicbokeh.train.image_folder import ImageFolderPairs, crop_square, inference_view

H, W, CROP = 1000, 2000, 518  # a 2000x1000 photo


def _rows() -> np.ndarray:
    """Every pixel's value is its row index (float64, all channels)."""
    return np.repeat(np.arange(H, dtype=np.float64)[:, None, None], W, axis=1).repeat(3, axis=2)


def test_inference_view_crop_spans_every_row_of_the_photo():
    view = inference_view(_rows(), CROP)
    assert view.shape == (CROP, 1036, 3)  # Depth Anything's size for 1000x2000 at 518: 518 x (2000*0.518 -> 1036)
    for seed in range(5):
        crop = crop_square(view, CROP, np.random.default_rng(seed))
        assert crop.shape == (CROP, CROP, 3)
        assert crop[0].max() < 1.0 and crop[-1].min() > H - 2  # rows 0 .. last: the whole height
    native = crop_square(_rows(), CROP, np.random.default_rng(0))
    assert native[-1, 0, 0] - native[0, 0, 0] == CROP - 1  # the old crop: 518 of 1000 rows


@pytest.fixture
def ramp_folder(tmp_path):
    """A 2000x1000 PNG whose value rises with the row (0 at the top, 255 at the bottom)."""
    ramp = np.round(np.arange(H) * 255.0 / (H - 1)).astype(np.uint8)
    Image.fromarray(np.repeat(ramp[:, None], W, axis=1)).convert("RGB").save(tmp_path / "ramp.png")
    return tmp_path


def test_dataset_crops_at_the_inference_field_of_view(ramp_folder):
    photo = np.asarray(Image.open(ramp_folder / "ramp.png").convert("RGB"))
    # the independent reference: the official resize (float64 /255, INTER_CUBIC to 518 x 1036), centred crop
    reference = cv2.resize(photo.astype(np.float64) / 255.0, (1036, CROP), interpolation=cv2.INTER_CUBIC)
    reference = np.clip(reference[:, (1036 - CROP) // 2:(1036 - CROP) // 2 + CROP], 0, 1)
    val = ImageFolderPairs(ramp_folder, crop=CROP, train=False, field_of_view="inference")[0]
    np.testing.assert_allclose(val["clean"].numpy().transpose(1, 2, 0), reference, atol=1e-6)
    train = ImageFolderPairs(ramp_folder, crop=CROP, train=True, field_of_view="inference")
    clean = train[0]["clean"].numpy()
    assert clean[:, 0].max() <= 1 / 255 and clean[:, -1].min() >= 254 / 255  # top and bottom of the photo
    native = ImageFolderPairs(ramp_folder, crop=CROP, train=True, field_of_view="native")[0]["clean"].numpy()
    assert native[0, -1, 0] - native[0, 0, 0] < 0.55  # a native crop sees about half of the height


def test_inference_is_the_default_and_a_resume_key(ramp_folder, tmp_path):
    args = dd.build_parser().parse_args(["--teacher", "large", "--images", str(ramp_folder), "--output", str(tmp_path)])
    cfg = dd.config_from_args(args)
    assert cfg.field_of_view == "inference" and DistillConfig("t", "i", "o").field_of_view == "inference"
    assert "field_of_view" in RESUME_KEYS
    native = dd.config_from_args(dd.build_parser().parse_args(
        ["--teacher", "large", "--images", str(ramp_folder), "--output", str(tmp_path), "--field-of-view", "native"]))
    assert native.field_of_view == "native"
    check_config(cfg)
    with pytest.raises(MagicBokehError, match="multiple of the patch size 14"):
        check_config(DistillConfig("t", str(ramp_folder), str(tmp_path), crop=500))
    with pytest.raises(MagicBokehError, match="field-of-view"):
        check_config(DistillConfig("t", str(ramp_folder), str(tmp_path), field_of_view="wide"))


def test_data_builder_passes_the_field_of_view(ramp_folder, tmp_path):
    from magicbokeh.train.depth_distill_data import build_data

    for fov in ("inference", "native"):
        data = build_data(DistillConfig("t", str(ramp_folder), str(tmp_path), batch_size=1, num_workers=0,
                                        field_of_view=fov, val_images=str(ramp_folder)), 1)
        assert data.dataset.field_of_view == fov and data.val_loader.dataset.field_of_view == fov
