"""Reading ``lora.pkl`` (spec §4): contents, tolerance of extras, and clear errors."""

from __future__ import annotations

import pytest
import torch
from diffusion_fixtures import (  # noqa: F401  (fixtures)
    RANK_ATTN,
    RANK_UNET,
    RANK_VAE,
    REMOVED_TARGET,
    diffusion_cache,
    save_official_checkpoint,
    tiny_assets,
    torch_single_thread,
)

from magicbokeh.diffusion.checkpoint import read_checkpoint
from magicbokeh.diffusion.loading import load_magicbokeh
from magicbokeh.diffusion.safe_pickle import module_state_dict, restricted_torch_load
from magicbokeh.errors import MagicBokehError

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_checkpoint_contents_are_recovered_without_the_official_classes(tiny_assets):
    ckpt = read_checkpoint(tiny_assets.ckpt_path)
    assert (ckpt.rank_unet, ckpt.rank_vae, ckpt.rank_attn) == (RANK_UNET, RANK_VAE, RANK_ATTN)
    assert REMOVED_TARGET in ckpt.unet_encoder_modules
    assert "conv_in.base_layer.weight" in ckpt.state_dict_unet
    assert len(ckpt.processor_state_dict) == 32
    assert sorted(ckpt.extra_keys) == ["training_note", "unet_lora_others_modules"]
    # the pickled ControlNet flattens to exactly its state dict (no mid block, no attn2/norm2)
    assert set(ckpt.controlnet_state_dict) == set(tiny_assets.controlnet_state)
    for key, value in tiny_assets.controlnet_state.items():
        assert torch.equal(ckpt.controlnet_state_dict[key], value), key
    assert not any(".attn2." in k or k.startswith("mid_block") for k in ckpt.controlnet_state_dict)
    assert list(ckpt.controlnet_config["conditioning_embedding_out_channels"]) == [8, 16, 16]


def _write_variant(tiny_assets, tmp_path, edit) -> str:
    raw = dict(tiny_assets.raw)
    for key in ("state_dict_unet", "state_dict_vae", "processor_state_dict"):
        raw[key] = dict(raw[key])
    edit(raw)
    path = tmp_path / "variant.pkl"
    save_official_checkpoint(path, raw)
    return str(path)


def _load(tiny_assets, ckpt):
    return load_magicbokeh(tiny_assets.base_dir, ckpt, device="cpu", dtype="fp32", attention="sdpa", cache_dir="off")


def test_missing_top_level_key_is_named(tiny_assets, tmp_path):
    path = _write_variant(tiny_assets, tmp_path, lambda raw: raw.pop("processor_state_dict"))
    with pytest.raises(MagicBokehError, match="missing key.*processor_state_dict"):
        read_checkpoint(path)


def test_missing_lora_tensor_is_named(tiny_assets, tmp_path, diffusion_cache):
    key = "up_blocks.2.attentions.1.transformer_blocks.0.attn1.to_v.lora_B.default_decoder.weight"
    assert key in tiny_assets.raw["state_dict_unet"]
    path = _write_variant(tiny_assets, tmp_path, lambda raw: raw["state_dict_unet"].pop(key))
    with pytest.raises(MagicBokehError, match=r"missing 1 LoRA tensor.*attn1\.to_v\.lora_B\.default_decoder"):
        _load(tiny_assets, path)


def test_missing_processor_tensor_is_named(tiny_assets, tmp_path, diffusion_cache):
    key = "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.1.weight"
    path = _write_variant(tiny_assets, tmp_path, lambda raw: raw["processor_state_dict"].pop(key))
    with pytest.raises(MagicBokehError, match=r"processor_state_dict is missing 1 tensor.*to_out_lora\.1"):
        _load(tiny_assets, path)


def test_wrong_shape_tensor_is_a_clear_error(tiny_assets, tmp_path, diffusion_cache):
    key = "down_blocks.0.resnets.0.conv1.lora_A.default_encoder.weight"
    good = tiny_assets.raw["state_dict_unet"][key]

    def edit(raw):
        raw["state_dict_unet"][key] = torch.zeros(good.shape[0], good.shape[1] + 1, *good.shape[2:])

    path = _write_variant(tiny_assets, tmp_path, edit)
    with pytest.raises(MagicBokehError, match=r"conv1\.lora_A\.default_encoder\.weight.*has shape \[4, 33, 3, 3\].*needs \[4, 32, 3, 3\]"):
        _load(tiny_assets, path)


def test_wrong_rank_is_a_clear_error(tiny_assets, tmp_path, diffusion_cache):
    path = _write_variant(tiny_assets, tmp_path, lambda raw: raw.update(rank_unet=8))
    with pytest.raises(MagicBokehError, match=r"\(rank 8\)"):
        _load(tiny_assets, path)


def test_controlnet_weight_problems_name_the_key(tiny_assets, tmp_path, diffusion_cache):
    def edit(raw):
        state = {k: v.clone() for k, v in tiny_assets.controlnet_state.items()}
        state.pop("controlnet_down_blocks.2.weight")
        raw["controlnet"] = state  # a plain state dict is accepted in place of the object

    path = _write_variant(tiny_assets, tmp_path, edit)
    with pytest.raises(MagicBokehError, match=r"missing 1 key.*controlnet_down_blocks\.2\.weight"):
        _load(tiny_assets, path)


def test_pickled_peft_wrappers_are_merged(tmp_path):
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.SiLU(), torch.nn.Linear(5, 4))
    net = inject_adapter_in_model(LoraConfig(r=2, lora_alpha=6, target_modules=["0", "2"]), net)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.5)
    x = torch.randn(3, 6)
    expected = net(x)
    path = tmp_path / "peft.pt"
    torch.save({"net": net}, path)
    state = module_state_dict(restricted_torch_load(path)["net"])
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    plain = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.SiLU(), torch.nn.Linear(5, 4))
    plain.load_state_dict(state)
    torch.testing.assert_close(plain(x), expected, atol=1e-5, rtol=1e-5)
