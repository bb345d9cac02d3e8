"""Every Depth Anything model reproduces the official ``DepthAnythingV2.infer_image`` outputs.

Uses ``../shared/testdata/dadepth-official-tiny`` (a model built from the official classes, with the
outputs the official code computed); skips cleanly when ``../shared`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from magicbokeh.depth.convert_dadepth import convert_dadepth
from magicbokeh.depth.depth_anything import (
    apply_upstream_position_embeddings,
    load_depth_model,
    official_input_size,
    predict_disparity,
)
from magicbokeh.focus import normalise_disparity, quantise_disparity_8bit

SHARED_TINY = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "dadepth-official-tiny"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    if not (SHARED_TINY / "dadepth_tiny.pth").is_file():
        pytest.skip("../shared/testdata/dadepth-official-tiny is not present in this checkout")
    out = tmp_path_factory.mktemp("official") / "dadepth-tiny"
    return convert_dadepth(SHARED_TINY / "dadepth_tiny.pth", out, config=SHARED_TINY / "config.json")


def _rel_max_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_official_resize_rule() -> None:
    # official-model.md §6 and the fixture's README.
    assert official_input_size(1024, 1562) == (518, 784)
    assert official_input_size(3024, 4032) == (518, 686)
    assert official_input_size(300, 460) == (518, 798)
    assert official_input_size(518, 518) == (518, 518)
    assert official_input_size(300, 460, 280) == (280, 434)


@pytest.mark.parametrize("name", ["square_518", "wide_280x392", "tall_392x266"])
def test_forward_matches_the_official_code(converted: Path, name: str) -> None:
    model = load_depth_model(str(converted))
    pixels = torch.from_numpy(np.load(SHARED_TINY / "inputs.npz")[name].astype(np.float32))
    with torch.no_grad():
        got = model(pixel_values=pixels).predicted_depth[0].numpy()
    assert _rel_max_error(got, np.load(SHARED_TINY / "official_outputs.npz")[name]) <= 1e-4


def test_stock_transformers_interpolation_differs_on_non_square_inputs(converted: Path) -> None:
    """Guards the test above: without the upstream interpolation the error is percent-level."""
    from transformers import AutoModelForDepthEstimation

    stock = AutoModelForDepthEstimation.from_pretrained(converted).eval()
    pixels = torch.from_numpy(np.load(SHARED_TINY / "inputs.npz")["wide_280x392"].astype(np.float32))
    with torch.no_grad():
        got = stock(pixel_values=pixels).predicted_depth[0].numpy()
    assert _rel_max_error(got, np.load(SHARED_TINY / "official_outputs.npz")["wide_280x392"]) > 1e-2


def test_photo_through_the_project_depth_source_matches_infer_image(converted: Path) -> None:
    """The same function the CLI and the app call: resolve_disparity with a model folder."""
    from magicbokeh.images import load_photo
    from magicbokeh.pipeline import resolve_disparity

    photo = load_photo(str(SHARED_TINY / "photo_300x460.png"))
    result = resolve_disparity(photo, str(converted))
    official = normalise_disparity(np.load(SHARED_TINY / "official_outputs.npz")["photo_300x460"])
    assert result.disparity.shape == official.shape == (300, 460)
    assert np.abs(result.disparity - official).max() <= 1e-4
    same_8bit = quantise_disparity_8bit(result.disparity) == quantise_disparity_8bit(official)
    assert same_8bit.mean() >= 0.999
    assert not result.approximate


def test_other_models_in_the_process_are_unaffected(converted: Path) -> None:
    from transformers import AutoModelForDepthEstimation, Dinov2Config, Dinov2Model

    patched = load_depth_model(str(converted))
    stock = AutoModelForDepthEstimation.from_pretrained(converted).eval()
    assert "interpolate_pos_encoding" in vars(patched.backbone.embeddings)
    assert "interpolate_pos_encoding" not in vars(stock.backbone.embeddings)
    torch.manual_seed(0)
    dino = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, image_size=56, patch_size=14)).eval()
    x = torch.randn(1, 3, 42, 70)
    with torch.no_grad():
        before = dino(pixel_values=x).last_hidden_state.clone()
        apply_upstream_position_embeddings(load_depth_model(str(converted)))
        after = dino(pixel_values=x).last_hidden_state
    assert torch.equal(before, after)
    assert "interpolate_pos_encoding" not in vars(dino.embeddings)


def test_fp32_and_input_size_flow_through(converted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from magicbokeh import depth

    est = depth.get_estimator(str(converted), input_size=280)
    assert est.input_size == 280
    seen: list[tuple] = []
    handle = est.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((tuple(kwargs["pixel_values"].shape), kwargs["pixel_values"].dtype)),
        with_kwargs=True,
    )
    try:
        rgb = np.random.default_rng(0).random((300, 460, 3)).astype(np.float32)
        out = est(rgb)
    finally:
        handle.remove()
    assert seen == [((1, 3, 280, 434), torch.float32)]
    assert out.shape == (300, 460) and out.dtype == np.float32
    assert out.min() == 0.0 and abs(out.max() - 1.0) < 1e-6
    # The input size is part of the depth cache key: another size is a different estimator and entry.
    assert depth.get_estimator(str(converted)) is not est
    raw = predict_disparity(est.model, rgb, input_size=280)
    assert np.allclose(normalise_disparity(raw), out)
