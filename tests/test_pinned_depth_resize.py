"""Pinned Depth Anything V2 input rule of the official ``infer_image`` (no ../shared needed).

``../shared/reference/official-model.md`` §6: scale = max(518 / h, 518 / w); each side rounded to a
multiple of 14, never below 518 (rounded up instead); OpenCV INTER_CUBIC on float RGB / 255;
ImageNet mean/std; the prediction is resized back with bilinear, align_corners=True. The expected
sizes are the document's examples plus a naive re-implementation written here.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import textured
from magicbokeh.depth.depth_anything import official_input_size, predict_disparity, prepare_pixel_values


def _naive_size(h: int, w: int, target: int = 518) -> tuple[int, int]:
    scale = max(target / h, target / w)

    def side(x: float) -> int:
        y = int(np.round(x / 14) * 14)  # numpy's round, as upstream's Resize
        return y if y >= target else int(math.ceil(x / 14) * 14)

    return side(scale * h), side(scale * w)


@pytest.mark.parametrize(("hw", "expected"), [
    ((1024, 1562), (518, 784)),
    ((3024, 4032), (518, 686)),
    ((300, 460), (518, 798)),  # a photo smaller than 518 is scaled up, not left small
    ((518, 518), (518, 518)),
    ((4032, 3024), (686, 518)),
])
def test_documented_examples(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert official_input_size(*hw) == expected


def test_lower_bound_rule_over_many_sizes() -> None:
    rng = np.random.default_rng(0)
    sizes = [(int(a), int(b)) for a, b in rng.integers(60, 5000, size=(300, 2))]
    sizes += [(520, 700), (531, 1000), (1000, 531), (519, 519), (100, 100), (2000, 525)]
    for h, w in sizes:
        got = official_input_size(h, w)
        assert got == _naive_size(h, w), (h, w)
        assert min(got) >= 518 and got[0] % 14 == 0 and got[1] % 14 == 0
    # Another input size follows the same rule.
    assert official_input_size(100, 150, 42) == _naive_size(100, 150, 42)


def test_pixels_are_cubic_resized_and_imagenet_normalised() -> None:
    rgb8 = (textured(37, 53, seed=5) * 255).astype(np.uint8)
    got = prepare_pixel_values(rgb8)
    h, w = _naive_size(37, 53)
    assert got.shape == (1, 3, h, w) and got.dtype == np.float32
    resized = cv2.resize(rgb8.astype(np.float64) / 255.0, (w, h), interpolation=cv2.INTER_CUBIC)
    expected = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(got[0].transpose(1, 2, 0), expected, rtol=0, atol=1e-5)
    # Guard: linear interpolation is measurably different on this texture.
    linear = cv2.resize(rgb8.astype(np.float64) / 255.0, (w, h), interpolation=cv2.INTER_LINEAR)
    assert np.abs(resized - linear).max() > 1e-3


class _RecordingModel(torch.nn.Module):
    """Stands in for the network: predicts the mean of its input channels, records the input."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, pixel_values: torch.Tensor):
        self.seen.append(pixel_values)
        return type("Out", (), {"predicted_depth": pixel_values.mean(dim=1) + self.anchor})()


def test_prediction_is_resized_back_bilinear_align_corners() -> None:
    rgb = textured(45, 31, seed=6)
    model = _RecordingModel()
    got = predict_disparity(model, rgb, input_size=28)
    (pixels,) = model.seen
    assert tuple(pixels.shape[-2:]) == _naive_size(45, 31, 28)
    expected = F.interpolate(pixels.mean(dim=1, keepdim=True), (45, 31), mode="bilinear", align_corners=True)[0, 0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)
    other = F.interpolate(pixels.mean(dim=1, keepdim=True), (45, 31), mode="bilinear", align_corners=False)[0, 0]
    assert np.abs(other.numpy() - expected.numpy()).max() > 1e-3  # the check can tell them apart
