"""Subject focus: the official auto-focus rule on LDF's mask, and keeping a whole subject sharp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ldf_formula_state
from magicbokeh.errors import MagicBokehError
from magicbokeh.subject.auto_focus import auto_focus
from magicbokeh.subject.defocus import subject_defocus, subject_weight

K = 32.0
FAR = 0.1


pytestmark = pytest.mark.usefixtures("isolated_subject_models")


def _board_scene(h: int = 60, w: int = 100):
    """A board tilted in depth (disparity 0.5 at its left end to 0.9 at its right) before a far plane."""
    disparity = np.full((h, w), FAR, np.float32)
    board = np.zeros((h, w), bool)
    board[15:45, 20:80] = True
    ramp = np.linspace(0.5, 0.9, 60, dtype=np.float32)
    disparity[15:45, 20:80] = ramp[None, :]
    return disparity, board, ramp


def _lower_median(values: np.ndarray) -> float:
    v = np.sort(values.ravel())
    return float(v[(v.size - 1) // 2])


def test_official_mask_focus_blurs_the_board_ends():
    from magicbokeh.focus import defocus_map, focus_from_mask

    disparity, board, ramp = _board_scene()
    f = focus_from_mask(disparity, board)
    assert f == pytest.approx(_lower_median(ramp))
    official = defocus_map(disparity, f, K)
    ends = official[15:45, [20, 79]]
    assert np.all(ends > 0.1)  # the board's ends are out of focus: the official behaviour


@pytest.mark.parametrize("feather", [1.0, 2.0])
def test_subject_keeps_every_board_pixel_sharp_and_the_background_unchanged(feather):
    disparity, board, ramp = _board_scene()
    res = subject_defocus(disparity, board, K, feather_px=feather)
    f = _lower_median(ramp)
    assert res.focus_disparity == pytest.approx(f)
    assert np.all(res.defocus[board] == 0.0)
    assert res.in_focus[board].all()
    # Closed form of the official map on the far plane: |FAR - f| * K / 32, bit for bit beyond the feather.
    dy = np.maximum(np.maximum(15 - np.arange(60), np.arange(60) - 44), 0)[:, None]
    dx = np.maximum(np.maximum(20 - np.arange(100), np.arange(100) - 79), 0)[None, :]
    dist = np.sqrt(dy.astype(np.float64) ** 2 + dx ** 2)
    far = dist >= feather + 1
    expected = np.float32(abs(np.float32(FAR) - np.float32(f))) * np.float32(K / 32)
    assert np.all(res.defocus[far] == expected)
    # The feather band: strictly between 0 and the official value, growing with distance.
    band = ~board & ~far
    assert band.any() and np.all(res.defocus[band] > 0) and np.all(res.defocus[band] < expected)
    np.testing.assert_allclose(res.defocus[band], expected * dist[band] / (feather + 1), rtol=1e-2)


def test_soft_masks_and_bad_masks():
    disparity, board, _ = _board_scene()
    soft = (board * 200).astype(np.uint8)
    soft[0, 0] = 40  # faint saliency: counts for the focal plane (official rule), not kept sharp
    res = subject_defocus(disparity, soft, K)
    assert res.subject.sum() == board.sum() and res.defocus[0, 0] > 0
    with pytest.raises(MagicBokehError, match="is 99x60 but the photo is 100x60"):
        subject_defocus(disparity, board[:, :99], K)
    with pytest.raises(MagicBokehError, match="empty"):
        subject_defocus(disparity, np.zeros_like(board), K)
    with pytest.raises(MagicBokehError, match="at least half"):
        subject_defocus(disparity, np.where(board, 20, 0).astype(np.uint8), K)
    assert subject_weight(board, 0.0)[board].max() == 0.0


def test_auto_focus_without_a_model_leaves_the_heuristic():
    disparity, _, _ = _board_scene()
    res = auto_focus(np.zeros((60, 100, 3), np.uint8), disparity)
    assert res.rule == "heuristic" and res.focus_disparity is None
    assert res.info()["focus_rule_description"].startswith("heuristic")


def test_auto_focus_with_a_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGICBOKEH_SALIENCY_MODEL", str(tmp_path / "model-40"))
    with pytest.raises(MagicBokehError, match="MAGICBOKEH_SALIENCY_MODEL.*not a file"):
        auto_focus(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32))


def test_auto_focus_applies_the_official_rule_to_the_official_mask(tmp_path, ldf_official):
    from PIL import Image

    torch.save(ldf_formula_state(ldf_official), tmp_path / "model-40")
    photo = np.asarray(Image.open(ldf_official / "photo_300x460.png").convert("RGB"))
    official_mask = np.asarray(Image.open(ldf_official / "official_photo_300x460.png"))
    h, w = official_mask.shape
    disparity = (np.add.outer(np.arange(h) * 0.7, np.arange(w) * 1.3) % 97 / 97).astype(np.float32)
    res = auto_focus(photo, disparity, saliency_model=tmp_path / "model-40")
    assert res.rule == "saliency" and res.model == str(tmp_path / "model-40")
    assert res.focus_disparity == pytest.approx(_lower_median(disparity[official_mask > 0]))
    # parity: the median of the 8-bit truncated disparity (inference.py)
    res8 = auto_focus(photo, disparity, saliency_model=tmp_path / "model-40", parity=True)
    q = np.floor(disparity[official_mask > 0].astype(np.float64) * 255) / 255
    assert res8.focus_disparity == pytest.approx(_lower_median(q), abs=1e-6)
