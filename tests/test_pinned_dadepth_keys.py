"""Pinned DA-depth key map: upstream Depth Anything V2 names -> transformers names (no ../shared).

The expected pairs are written here from ``../shared/reference/official-model.md`` §6 ("Hugging
Face port"), not taken from ``rename_keys``. A tiny four-stage model (every tensor distinct, weights
large enough that the output is O(1)) is built inline; its weights are renamed to the upstream
layout by that written list, converted back by the code under test, and must come back tensor for
tensor and give the same depth (relative tolerance). Guards show that a q/k swap or a wrong
refinenet order would change the output far beyond that tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from magicbokeh.depth.convert_dadepth import convert_state_dict, load_config

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

LAYERS, STAGES = 4, 4


def _official_pairs() -> list[tuple[str, str]]:
    """(upstream key, transformers key) per official-model.md §6; qkv handled separately."""
    pairs = [
        ("pretrained.cls_token", "backbone.embeddings.cls_token"),
        ("pretrained.mask_token", "backbone.embeddings.mask_token"),
        ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
        ("pretrained.patch_embed.proj.weight", "backbone.embeddings.patch_embeddings.projection.weight"),
        ("pretrained.patch_embed.proj.bias", "backbone.embeddings.patch_embeddings.projection.bias"),
        ("pretrained.norm.weight", "backbone.layernorm.weight"),
        ("pretrained.norm.bias", "backbone.layernorm.bias"),
    ]
    for i in range(LAYERS):
        a, b = f"pretrained.blocks.{i}", f"backbone.encoder.layer.{i}"
        pairs += [(f"{a}.ls1.gamma", f"{b}.layer_scale1.lambda1"), (f"{a}.ls2.gamma", f"{b}.layer_scale2.lambda1")]
        for p in ("weight", "bias"):
            pairs += [(f"{a}.{n}.{p}", f"{b}.{n}.{p}") for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2")]
            pairs.append((f"{a}.attn.proj.{p}", f"{b}.attention.output.dense.{p}"))
    for i in range(STAGES):
        for p in ("weight", "bias"):
            pairs.append((f"depth_head.projects.{i}.{p}", f"neck.reassemble_stage.layers.{i}.projection.{p}"))
            if i != 2:
                pairs.append((f"depth_head.resize_layers.{i}.{p}", f"neck.reassemble_stage.layers.{i}.resize.{p}"))
        pairs.append((f"depth_head.scratch.layer{i + 1}_rn.weight", f"neck.convs.{i}.weight"))
    for up, hf in [(1, 3), (2, 2), (3, 1), (4, 0)]:  # reversed order
        a, b = f"depth_head.scratch.refinenet{up}", f"neck.fusion_stage.layers.{hf}"
        for p in ("weight", "bias"):
            pairs.append((f"{a}.out_conv.{p}", f"{b}.projection.{p}"))
            pairs += [(f"{a}.resConfUnit{u}.conv{c}.{p}", f"{b}.residual_layer{u}.convolution{c}.{p}")
                      for u in (1, 2) for c in (1, 2)]
    for p in ("weight", "bias"):
        pairs += [(f"depth_head.scratch.output_conv1.{p}", f"head.conv1.{p}"),
                  (f"depth_head.scratch.output_conv2.0.{p}", f"head.conv2.{p}"),
                  (f"depth_head.scratch.output_conv2.2.{p}", f"head.conv3.{p}")]
    return pairs


def _to_upstream(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {up: hf[name] for up, name in _official_pairs()}
    for i in range(LAYERS):
        a, b = f"pretrained.blocks.{i}.attn.qkv", f"backbone.encoder.layer.{i}.attention.attention"
        for p in ("weight", "bias"):  # three equal row blocks in q, k, v order
            out[f"{a}.{p}"] = torch.cat([hf[f"{b}.{n}.{p}"] for n in ("query", "key", "value")])
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    folder = tmp_path_factory.mktemp("tiny-da4")
    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=32,
        image_size=28, patch_size=14, out_features=[f"stage{i + 1}" for i in range(STAGES)],
        reshape_hidden_states=False, apply_layernorm=True,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, fusion_hidden_size=8,
        neck_hidden_sizes=[4, 8, 12, 16], reassemble_factors=[4, 2, 1, 0.5], head_hidden_size=8,
    )
    model = DepthAnythingForDepthEstimation(config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():  # distinct, O(1)-output weights
            param.copy_(torch.randn(param.shape, generator=gen) * (0.5 if param.ndim > 1 else 0.2))
            if "norm" in name and name.endswith("weight"):
                param.add_(1.0)
        model.head.conv3.bias.fill_(0.5)
    model.save_pretrained(folder)
    return folder, load_file(str(folder / "model.safetensors"))


def _depth(folder: Path, pixels: torch.Tensor) -> torch.Tensor:
    from transformers import DepthAnythingForDepthEstimation

    from magicbokeh.depth.depth_anything import apply_upstream_position_embeddings

    model = apply_upstream_position_embeddings(DepthAnythingForDepthEstimation.from_pretrained(folder).eval())
    with torch.no_grad():
        return model(pixel_values=pixels).predicted_depth


def _save(folder: Path, state: dict[str, torch.Tensor], like: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text((like / "config.json").read_text())
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


def test_written_pairs_cover_every_tensor(tiny) -> None:
    _, hf = tiny
    covered = {name for _, name in _official_pairs()}
    covered |= {f"backbone.encoder.layer.{i}.attention.attention.{n}.{p}"
                for i in range(LAYERS) for n in ("query", "key", "value") for p in ("weight", "bias")}
    assert covered == set(hf)


def test_conversion_restores_every_tensor_and_the_depth(tiny, tmp_path: Path) -> None:
    folder, hf = tiny
    upstream = _to_upstream(hf)
    converted = convert_state_dict(upstream, load_config(folder))
    assert set(converted) == set(hf)
    for name, tensor in hf.items():
        assert torch.equal(converted[name], tensor), name

    pixels = torch.randn(1, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    reference = _depth(folder, pixels)
    assert reference.abs().mean() > 0.05  # an O(1) output, so a relative tolerance means something
    got = _depth(_save(tmp_path / "converted", converted, folder), pixels)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6 * float(reference.abs().max()))


def _rel_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_guards_wrong_weights_change_the_depth(tiny, tmp_path: Path) -> None:
    """The forward comparison above has the power to see the mistakes a key map can make."""
    folder, hf = tiny
    pixels = torch.randn(1, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    reference = _depth(folder, pixels)

    qk = dict(hf)
    b = "backbone.encoder.layer.1.attention.attention"
    for p in ("weight", "bias"):
        qk[f"{b}.query.{p}"], qk[f"{b}.key.{p}"] = hf[f"{b}.key.{p}"], hf[f"{b}.query.{p}"]
    assert _rel_change(_depth(_save(tmp_path / "qk", qk, folder), pixels), reference) > 1e-3

    order = dict(hf)  # refinenet1..4 -> fusion layers 0..3 instead of 3..0 (shapes agree here)
    for name in hf:
        if name.startswith("neck.fusion_stage.layers."):
            i = int(name.split(".")[3])
            order[name.replace(f"layers.{i}.", f"layers.{3 - i}.", 1)] = hf[name]
    assert _rel_change(_depth(_save(tmp_path / "order", order, folder), pixels), reference) > 1e-3

    zeroed = {k: (v if "attention.attention" in k else torch.zeros_like(v)) for k, v in hf.items()}
    assert _rel_change(_depth(_save(tmp_path / "zeroed", zeroed, folder), pixels), reference) > 1e-3
