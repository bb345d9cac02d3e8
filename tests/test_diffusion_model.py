"""Network assembly: merged LoRA vs peft, structure, x0 step, converted-weights cache."""

from __future__ import annotations

import json

import pytest
import torch
from diffusion_fixtures import SD21_SCHEDULER, diffusion_cache, tiny_assets, torch_single_thread  # noqa: F401

from magicbokeh.diffusion import loading
from magicbokeh.diffusion.checkpoint import read_checkpoint
from magicbokeh.diffusion.loading import alpha_prod_at_last_step, assemble, ddpm_scheduler, load_magicbokeh
from magicbokeh.diffusion.reference import build_official_style

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _stock(assets):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(assets.base_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(assets.base_dir, subfolder="vae")
    return unet, vae


@pytest.fixture(scope="module")
def both_models(tmp_path_factory):
    from diffusion_fixtures import get_tiny_assets

    assets = get_tiny_assets(tmp_path_factory)
    ckpt = read_checkpoint(assets.ckpt_path)
    ours = assemble(*_stock(assets), ckpt)
    ref = build_official_style(*_stock(assets), ckpt, SD21_SCHEDULER)
    return ours, ref


def test_merged_lora_matches_unmerged_peft(both_models):
    from diffusers.models.attention_processor import AttnProcessor2_0

    (unet, controlnet, vae, _), ref = both_models
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 16, 16, generator=gen)
    cond = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    image = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    with torch.no_grad():
        # VAE encoder (merged LoRA on encoder convs, attention and quant_conv)
        ours = vae.quant_conv(vae.encoder(image))
        theirs = ref.vae.quant_conv(ref.vae.encoder(image))
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)
        # ControlNet residuals (same weights, own forward vs stock forward)
        res = controlnet(z, 999, cond)
        res_ref, _ = ref.controlnet(z, torch.tensor([999]), encoder_hidden_states=None, controlnet_cond=cond, return_dict=False)
        assert len(res) == len(res_ref) == 6
        for a, b in zip(res, res_ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # UNet with both merged adapters and the fine-tuned conv_in, plain attention on both sides
        saved = unet.attn_processors
        unet.set_attn_processor(AttnProcessor2_0())
        ref_saved = ref.unet.attn_processors
        ref.unet.set_attn_processor(AttnProcessor2_0())
        try:
            kw = dict(encoder_hidden_states=None, down_block_additional_residuals=res,
                      mid_block_additional_residual=torch.zeros(()), return_dict=False)  # fmt: skip
            eps = unet(z, 999, **kw)[0]
            eps_ref = ref.unet(z, 999, **kw)[0]
        finally:
            unet.set_attn_processor(saved)
            ref.unet.set_attn_processor(ref_saved)
    torch.testing.assert_close(eps, eps_ref, atol=2e-5, rtol=1e-5)


def test_patched_structure(both_models):
    (unet, controlnet, vae, report), _ = both_models
    assert unet.mid_block is None and unet.config.mid_block_type is None
    keys = unet.state_dict().keys()
    assert not any(".attn2." in k or k.startswith("mid_block") for k in keys)
    assert not any(".transformer_blocks.0.norm2." in k for k in keys)
    focus = [n for n in unet.attn_processors if type(unet.attn_processors[n]).__name__ == "FocusAttnProcessor"]
    assert focus == [n for n in unet.attn_processors if "up_blocks" in n and n.endswith("attn1.processor")]
    assert len(focus) == report["focus_layers"] == 4
    assert report["ignored_targets"] == ["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q"]
    assert not any("mid_block" in k for k in controlnet.state_dict())


def test_lora_changes_the_network(tiny_assets):
    # guards the comparison above against a checkpoint whose LoRA has no effect
    from diffusers.models.attention_processor import AttnProcessor2_0

    from magicbokeh.diffusion.models import patch_unet

    ckpt = read_checkpoint(tiny_assets.ckpt_path)
    merged = assemble(*_stock(tiny_assets), ckpt)[0]
    plain = patch_unet(_stock(tiny_assets)[0])
    for u in (merged, plain):
        u.set_attn_processor(AttnProcessor2_0())
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        kw = dict(encoder_hidden_states=None, return_dict=False)
        assert (merged(z, 999, **kw)[0] - plain(z, 999, **kw)[0]).abs().max() > 1e-2


def test_x0_formula_matches_ddpm_step():
    alpha, t, clip = alpha_prod_at_last_step(SD21_SCHEDULER)
    assert t == 999 and clip is None
    assert abs(alpha.item() - 0.0046600951) < 1e-9  # spec §1.7
    assert abs(1 / alpha.sqrt().item() - 14.648819) < 1e-5
    assert abs((1 - alpha).sqrt().item() / alpha.sqrt().item() - 14.614647) < 1e-5

    class _M:  # the method only needs these attributes
        alpha_prod_t = alpha
        clip_sample = None

    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=gen)
    eps = z / 0.9976672 + 0.05 * torch.randn(2, 4, 8, 8, generator=gen)  # a realistic cancellation
    ours = loading.MagicBokehModel.x0_from_eps(_M(), z, eps)
    scheduler = ddpm_scheduler(SD21_SCHEDULER)
    scheduler.set_timesteps(timesteps=[999])
    step = scheduler.step(eps, 999, z, generator=torch.Generator().manual_seed(1)).prev_sample
    torch.testing.assert_close(ours, step, atol=1e-6, rtol=0)


def test_clip_sample_in_the_config_is_honoured():
    cfg = {k: v for k, v in SD21_SCHEDULER.items() if k != "clip_sample"}  # DDPM default: clip
    _, _, clip = alpha_prod_at_last_step(cfg)
    assert clip == 1.0


def test_converted_cache_is_used_on_the_next_start(tiny_assets, diffusion_cache, monkeypatch):
    first = load_magicbokeh(tiny_assets.base_dir, tiny_assets.ckpt_path, device="cpu", dtype="fp32", attention="sdpa")
    assert first.info["from_cache"] is False
    folders = [p for p in diffusion_cache.glob("diffusion/*") if (p / "meta.json").is_file()]
    assert len(folders) == 1 and {p.name for p in folders[0].iterdir()} >= {
        "unet.safetensors", "controlnet.safetensors", "vae.safetensors", "meta.json"}  # fmt: skip
    assert json.loads((folders[0] / "meta.json").read_text())["rank_attn"] == 8
    loading.clear_loaded_models()

    def no_pickle(*a, **k):
        raise AssertionError("the converted cache should make reading lora.pkl unnecessary")

    monkeypatch.setattr(loading, "read_checkpoint", no_pickle)
    second = load_magicbokeh(tiny_assets.base_dir, tiny_assets.ckpt_path, device="cpu", dtype="fp32", attention="sdpa")
    assert second.info["from_cache"] is True and second is not first
    for name in ("unet", "controlnet", "vae"):
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # a different dtype is a different cache entry
    loading.clear_loaded_models()
    monkeypatch.undo()
    third = load_magicbokeh(tiny_assets.base_dir, tiny_assets.ckpt_path, device="cpu", dtype="bf16", attention="sdpa")
    assert third.dtype == torch.bfloat16 and third.info["from_cache"] is False
    assert next(third.unet.parameters()).dtype == torch.bfloat16


def test_model_is_loaded_once_per_process(tiny_assets, diffusion_cache):
    kw = dict(device="cpu", dtype="fp32", attention="sdpa")
    a = load_magicbokeh(tiny_assets.base_dir, tiny_assets.ckpt_path, **kw)
    b = load_magicbokeh(str(tiny_assets.base_dir), str(tiny_assets.ckpt_path), **kw)
    assert a is b
