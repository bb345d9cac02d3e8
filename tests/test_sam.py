"""Point prompts: SAM with the per-photo embedding cache (tiny random SAM built locally), the GrabCut
fallback, point/mask checks and the overlay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magicbokeh.errors import MagicBokehError
from magicbokeh.subject import sam
from magicbokeh.subject.masks import check_mask, check_points, mask_overlay


def _build_tiny_sam(folder):
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    torch.manual_seed(0)
    cfg = SamConfig(
        vision_config=dict(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16, window_size=2, global_attn_indexes=[1],
                           num_pos_feats=16, mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=32, image_embedding_size=4, image_size=64, patch_size=16,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    SamModel(cfg).eval().save_pretrained(folder)
    SamProcessor(SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                      mask_size={"longest_edge": 16},
                                      mask_pad_size={"height": 16, "width": 16})).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> str:
    return _build_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(autouse=True)
def _fresh_segmenters():
    sam._SEGMENTERS.clear()
    yield
    sam._SEGMENTERS.clear()


def _photo(seed: int = 0, h: int = 90, w: int = 130) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _count_encoder_calls(segmenter: sam.PointSegmenter) -> list[int]:
    segmenter._load()
    calls = [0]
    segmenter._model.vision_encoder.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_reclick_reuses_the_image_embedding(tiny_sam):
    seg = sam.PointSegmenter(tiny_sam)
    calls = _count_encoder_calls(seg)
    photo = _photo()
    first = seg.segment(photo, [[60, 40, 1]])
    assert calls[0] == 1 and not first.embedding_cached
    again = seg.segment(photo, [[60, 40, 1], [20, 70, 1]])
    assert calls[0] == 1 and again.embedding_cached
    # The same pixels as floats (the app's photos) hash the same after 8-bit rounding.
    seg.segment(photo.astype(np.float32) / 255.0, [[10, 10, 1]])
    assert calls[0] == 1
    seg.segment(_photo(1), [[60, 40, 1]])
    assert calls[0] == 2
    assert first.mask.shape == (90, 130) and first.mask.dtype == bool


def test_cached_path_equals_the_plain_transformers_path(tiny_sam):
    """Reference: processor with the points + full SamModel forward + post-processing, no cache."""
    from PIL import Image
    from transformers import SamModel, SamProcessor

    photo = _photo(2)
    points = [[100.0, 30.5, 1], [15.0, 80.0, 0]]
    seg = sam.PointSegmenter(tiny_sam)
    seg.segment(photo, [[5, 5, 1]])  # fill the cache first
    ours = seg.segment(photo, points)
    assert ours.embedding_cached

    model, proc = SamModel.from_pretrained(tiny_sam).eval(), SamProcessor.from_pretrained(tiny_sam)
    inputs = proc(images=Image.fromarray(photo), input_points=[[[p[:2] for p in points]]],
                  input_labels=[[[p[2] for p in points]]], return_tensors="pt")
    with torch.inference_mode():
        out = model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"],
                    input_labels=inputs["input_labels"], multimask_output=False)
    ref = proc.image_processor.post_process_masks(out.pred_masks, inputs["original_sizes"],
                                                  inputs["reshaped_input_sizes"])[0][0, 0].numpy()
    assert np.array_equal(ours.mask, ref)
    assert ours.score == pytest.approx(float(out.iou_scores[0, 0, 0]), abs=1e-6)


def test_a_negative_point_changes_the_mask(tiny_sam):
    seg = sam.PointSegmenter(tiny_sam)
    photo = _photo(3)
    pos = seg.segment(photo, [[60, 40, 1], [70, 45, 1]])
    neg = seg.segment(photo, [[60, 40, 1], [70, 45, 0]])
    assert pos.mask.any() and not np.array_equal(pos.mask, neg.mask)


def test_points_outside_the_photo_are_rejected(tiny_sam):
    seg = sam.PointSegmenter(tiny_sam)
    with pytest.raises(MagicBokehError, match=r"\(130, 10\) is outside the 130x90 image"):
        seg.segment(_photo(), [[130, 10, 1]])
    with pytest.raises(MagicBokehError, match="outside"):
        seg.segment(_photo(), [[-1, 10, 1]])
    with pytest.raises(MagicBokehError, match="at least one positive point"):
        seg.segment(_photo(), [[10, 10, 0]])
    with pytest.raises(MagicBokehError, match="label must be 1"):
        check_points([[10, 10, 2]], 130, 90)
    with pytest.raises(MagicBokehError, match=r"\[x, y\]"):
        check_points([[10]], 130, 90)
    assert check_points([[10.5, 3]], 130, 90) == [(10.5, 3.0, 1)]


def _disc_scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    disc = (xx - 100) ** 2 + (yy - 60) ** 2 <= 30 ** 2
    img = np.empty((h, w, 3), np.float32)
    img[...] = (0.15, 0.55, 0.2)
    img[disc] = (0.85, 0.2, 0.15)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), disc


def test_without_weights_grabcut_takes_over_and_says_so(monkeypatch):
    monkeypatch.setattr(sam.hub, "cached_file", lambda *a, **k: None)
    monkeypatch.setattr(sam.hub, "hub_reachable", lambda *a, **k: False)
    photo, disc = _disc_scene()
    with pytest.raises(sam.SamUnavailable, match="facebook/sam-vit-base"):
        sam.segment_points(photo, [[100, 60, 1]], allow_fallback=False)
    res = sam.segment_points(photo, [[100, 60, 1]])
    assert res.source == "grabcut" and res.model == "opencv-grabcut"
    assert "GrabCut" in res.messages[0] and "Segment Anything unavailable" in res.messages[0]
    iou = (res.mask & disc).sum() / (res.mask | disc).sum()
    assert iou > 0.9
    # A negative click on the subject removes it from the cut around the clicks.
    with_neg = sam.segment_points(photo, [[100, 60, 1], [120, 60, 0]])
    assert not with_neg.mask[60, 118:123].all()
    assert with_neg.info()["source"] == "grabcut"


def test_status_lines_say_what_is_missing(tiny_sam, monkeypatch):
    assert sam.sam_status(tiny_sam) == (True, f"clicks select the subject with Segment Anything ({tiny_sam}).")
    monkeypatch.setattr(sam.hub, "cached_file", lambda *a, **k: None)
    monkeypatch.setattr(sam.hub, "hub_reachable", lambda *a, **k: False)
    ok, line = sam.sam_status()
    assert not ok and "GrabCut" in line and "facebook/sam-vit-base" in line


def test_check_mask_rejects_wrong_size_and_empty_masks():
    soft = np.zeros((4, 6), np.uint8)
    soft[1, 2] = 1  # the official rule: any non-zero saliency counts
    assert check_mask(soft, 6, 4).sum() == 1
    with pytest.raises(MagicBokehError, match="is 6x4 but the photo is 4x6"):
        check_mask(soft, 4, 6)
    with pytest.raises(MagicBokehError, match="empty"):
        check_mask(np.zeros((4, 6)), 6, 4)
    with pytest.raises(MagicBokehError, match="single-channel"):
        check_mask(np.ones((4, 6, 3)), 6, 4)


def test_overlay_tints_only_the_mask_and_outlines_it():
    img = np.full((8, 10, 3), 100, np.uint8)
    mask = np.zeros((8, 10), bool)
    mask[2:6, 3:8] = True
    out = mask_overlay(img, mask, colour=(200, 0, 0), alpha=0.5, outline=True)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out[~mask], img[~mask])
    assert tuple(out[3, 4]) == (150, 50, 50)  # interior: 100 * 0.5 + colour * 0.5
    assert tuple(out[2, 3]) == (200, 0, 0)  # boundary pixel
    soft = mask_overlay(img, (mask * 255).astype(np.uint8), colour=(200, 0, 0), alpha=0.5, outline=False)
    assert tuple(soft[3, 4]) == (150, 50, 50)
    with pytest.raises(MagicBokehError, match="overlay"):
        mask_overlay(img, mask[:4])
