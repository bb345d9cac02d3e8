"""LDF salient-object network and loader.

Parity tests use ``../shared/testdata/ldf-official`` (outputs of the official MagicBokeh/LDF code on
formula weights) and skip cleanly without it; the loader tests build state dicts inline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ldf_formula_state
from magicbokeh.errors import MagicBokehError
from magicbokeh.subject import ldf
from magicbokeh.subject.ldf_net import LDF

pytestmark = pytest.mark.usefixtures("isolated_subject_models")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


# --------------------------------------------------------------------------------------------
# Against the official code
# --------------------------------------------------------------------------------------------


def test_key_names_and_shapes_match_the_official_checkpoint(ldf_official):
    keys = json.loads((ldf_official / "ldf_keys.json").read_text())
    ours = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in LDF().state_dict().items()}
    theirs = {name: (tuple(shape), dtype) for name, shape, dtype in keys}
    assert ours == theirs
    # official-model.md §7: 543 tensors, 25,150,147 parameters.
    assert len(theirs) == 543
    assert sum(p.numel() for p in LDF().parameters()) == 25_150_147


def test_logits_match_the_official_code(ldf_official):
    net = LDF().eval()
    net.load_state_dict(ldf_formula_state(ldf_official), strict=True)
    data = np.load(ldf_official / "official_logits.npz")
    with torch.inference_mode():
        all_six = net(torch.from_numpy(data["x352"]))
        fused2 = net.fused2(torch.from_numpy(data["x352"]))
    ref = data["out2"]
    ours = all_six[5][0, 0].numpy()
    scale = float(np.abs(ref).max())
    # The fixture carries float32 rounding of a deep net: our float64 evaluation of the same
    # network misses it by 1.4e-4 of the peak, so 2e-4 is the tightest float32 tolerance (a wrong
    # layer gives errors of order 1, see test_a_wrong_layer_is_detected).
    assert np.abs(ours - ref).max() <= 2e-4 * scale
    assert np.linalg.norm(ours - ref) <= 2e-4 * np.linalg.norm(ref)
    assert torch.equal(fused2, all_six[5])


def test_a_wrong_layer_is_detected(ldf_official):
    """The tolerance above is meaningful: one BatchNorm shifted by 1 % breaks it."""
    state = ldf_formula_state(ldf_official)
    state["decoderb.bn3.weight"] = state["decoderb.bn3.weight"] * 1.01
    net = LDF().eval()
    net.load_state_dict(state, strict=True)
    data = np.load(ldf_official / "official_logits.npz")
    with torch.inference_mode():
        ours = net.fused2(torch.from_numpy(data["x352"]))[0, 0].numpy()
    assert np.abs(ours - data["out2"]).max() > 2e-4 * np.abs(data["out2"]).max()


def test_photo_mask_matches_prepare_data(ldf_official, tmp_path):
    # Through the real loading path: an official-format .pth -> safetensors cache -> network.
    pth = tmp_path / "model-40"
    torch.save(ldf_formula_state(ldf_official), pth)
    net = ldf.load_ldf(pth)
    photo = _read_png(ldf_official / "photo_300x460.png")[..., :3]
    ref = _read_png(ldf_official / "official_photo_300x460.png")
    mask = ldf.saliency_mask(net, photo)
    assert mask.dtype == np.uint8 and mask.shape == ref.shape == photo.shape[:2]
    diff = np.abs(mask.astype(np.int16) - ref.astype(np.int16))
    assert np.mean(diff <= 1) >= 0.995
    # Float [0, 1] input (the app's photos) gives the same mask as the 8-bit file.
    assert np.array_equal(ldf.saliency_mask(net, photo.astype(np.float32) / 255.0), mask)


# --------------------------------------------------------------------------------------------
# Loading (no shared data needed)
# --------------------------------------------------------------------------------------------


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in LDF().state_dict().items()}


def test_checkpoint_round_trips_through_the_safetensors_cache(tmp_path, monkeypatch):
    state = _random_state()
    # apex O2 / DDP style: fp16 floats under "module." inside a "model" wrapper.
    saved = {"model": {f"module.{k}": (v.half() if v.is_floating_point() else v) for k, v in state.items()}}
    pth = tmp_path / "model-40"
    torch.save(saved, pth)
    cached = ldf.converted_weights(pth)
    assert cached.suffix == ".safetensors" and cached.parent == tmp_path / "cache" / "saliency"
    from safetensors.torch import load_file

    loaded = load_file(str(cached))
    assert set(loaded) == set(state)
    for k, v in state.items():
        expect = v.half().float() if v.is_floating_point() else v
        assert loaded[k].dtype == expect.dtype and torch.equal(loaded[k], expect), k
    # Second start: the pickle is not read again.
    monkeypatch.setattr(ldf, "read_ldf_checkpoint", lambda p: pytest.fail("re-read the pickle"))
    assert ldf.converted_weights(pth) == cached
    net = ldf.load_ldf(pth)
    assert torch.equal(net.state_dict()["linear.3.weight"], state["linear.3.weight"].half().float())
    assert not any(p.name.startswith(".") for p in cached.parent.iterdir())  # no temporaries left


class _Hostile:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_hostile_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    pth = tmp_path / "model-40"
    torch.save({"bkbone.conv1.weight": torch.zeros(1), "evil": _Hostile(str(marker))}, pth)
    with pytest.raises(MagicBokehError, match=r"refused to load model-40: it contains code.*mkdir"):
        ldf.converted_weights(pth)
    assert not marker.exists()
    assert not (tmp_path / "cache" / "saliency").exists() or not any((tmp_path / "cache" / "saliency").iterdir())


def test_wrong_checkpoint_names_the_problem(tmp_path):
    state = _random_state()
    del state["linear.3.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["linearb.weight"] = torch.zeros(1, 64, 1, 1)
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(MagicBokehError) as err:
        ldf.converted_weights(tmp_path / "other.pth")
    text = str(err.value)
    assert "missing: linear.3.bias" in text and "unexpected: extra.weight" in text
    assert "linearb.weight (1, 64, 1, 1) (expected (1, 64, 3, 3))" in text and "weijun-arc/LDF" in text


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    pth = tmp_path / "model-40"
    torch.save(_random_state(), pth)
    pth.write_bytes(pth.read_bytes()[:5000])
    with pytest.raises(MagicBokehError, match="truncated or not a torch checkpoint"):
        ldf.converted_weights(pth)


def test_resolver_prefers_the_flag_then_the_environment(tmp_path, monkeypatch):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    assert ldf.resolve_saliency_model() is None
    monkeypatch.setenv("MAGICBOKEH_SALIENCY_MODEL", str(b))
    assert ldf.resolve_saliency_model() == b
    assert ldf.resolve_saliency_model(a) == a
    with pytest.raises(MagicBokehError, match=r"--saliency-model\) is not a file.*weijun-arc/LDF"):
        ldf.resolve_saliency_model(tmp_path / "nope.pth")
    monkeypatch.setenv("MAGICBOKEH_SALIENCY_MODEL", str(tmp_path / "gone"))
    with pytest.raises(MagicBokehError, match="MAGICBOKEH_SALIENCY_MODEL"):
        ldf.resolve_saliency_model()


def test_saliency_status_says_what_is_missing(tmp_path, monkeypatch):
    ok, line = ldf.saliency_status()
    assert not ok and "heuristic" in line and "weijun-arc/LDF" in line
    assert ldf.saliency_status(tmp_path / "gone.pth")[0] is False
    pth = tmp_path / "model-40"
    pth.write_bytes(b"x")
    monkeypatch.setenv("MAGICBOKEH_SALIENCY_MODEL", str(pth))
    assert ldf.saliency_status() == (True, f"official salient-object focus with LDF weights {pth}.")


def test_preprocessing_is_pil_bilinear_and_imagenet_normalisation():
    from PIL import Image

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    x = ldf.preprocess(rgb)
    assert x.shape == (1, 3, 352, 352) and x.dtype == torch.float32
    # Independent reference: PIL resize, then the normalisation written out per channel in float64.
    small = np.asarray(Image.fromarray(rgb).resize((352, 352), Image.BILINEAR), np.float64) / 255.0
    ref = (small - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), ref, atol=1e-6)
    with pytest.raises(MagicBokehError, match="RGB"):
        ldf.preprocess(rng.random((10, 10)))
