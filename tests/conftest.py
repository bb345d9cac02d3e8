"""Shared fixtures: offline environment, synthetic scenes, the official test photos when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "testdata" / "official-magicbokeh"
LDF_OFFICIAL = REPO.parent / "shared" / "testdata" / "ldf-official"


@pytest.fixture
def official_data() -> Path:
    """The official low-quality photos, masks and outputs; skips when ../shared is absent."""
    if not (OFFICIAL / "inputs").is_dir():
        pytest.skip("../shared/testdata/official-magicbokeh is not present in this checkout")
    return OFFICIAL


@pytest.fixture
def ldf_official() -> Path:
    """Outputs of the official LDF code on formula weights; skips when ../shared is absent."""
    if not (LDF_OFFICIAL / "ldf_keys.json").is_file():
        pytest.skip("../shared/testdata/ldf-official is not present in this checkout")
    return LDF_OFFICIAL


def ldf_formula_state(folder: Path):
    """The official-format LDF state dict of the formula weights in ``folder`` (its own script)."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("ldf_weights_formula", folder / "weights_formula.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ldf_state_dict(json.loads((folder / "ldf_keys.json").read_text()))


@pytest.fixture(autouse=True)
def _fresh_depth_cache():
    from magicbokeh.depth import DEPTH_CACHE

    DEPTH_CACHE.clear()
    yield
    DEPTH_CACHE.clear()


@pytest.fixture
def isolated_subject_models(tmp_path, monkeypatch):
    """A private converted-weights cache, no configured saliency model, and empty LDF/SAM model and
    subject-mask caches."""
    from magicbokeh.subject import ldf, render_focus, sam

    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MAGICBOKEH_SALIENCY_MODEL", raising=False)
    caches = (ldf._MODELS, sam._SEGMENTERS, render_focus._cache)
    for cache in caches:
        cache.clear()
    yield
    for cache in caches:
        cache.clear()


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A colourful, smooth-ish texture in [0.1, 0.9] (float32 RGB)."""
    rng = np.random.default_rng(seed)
    import cv2

    small = rng.random((max(h // 8, 2), max(w // 8, 2), 3)).astype(np.float32)
    return (0.1 + 0.8 * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_depth_model(tmp_path_factory) -> Path:
    """A tiny Depth Anything V2-shaped model + processor saved locally in the HF format."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    folder = tmp_path_factory.mktemp("tiny-depth-anything")
    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        image_size=28, patch_size=14, out_features=["stage1", "stage2"],
        reshape_hidden_states=False, apply_layernorm=True,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, fusion_hidden_size=8,
        neck_hidden_sizes=[8, 16], reassemble_factors=[2, 1], head_hidden_size=8,
    )
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
        do_pad=False, resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder
