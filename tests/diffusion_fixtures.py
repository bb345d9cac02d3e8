"""Tiny SD2.1-shaped base model and a synthetic official-format ``lora.pkl`` for the diffusion tests.

The base folder (``unet/``, ``vae/``, ``scheduler/``) holds *stock* diffusers models (with mid block
and cross-attention), as the SD2.1 repo does. The checkpoint is written the way the official code
would: LoRA target lists built with the spec §5 rules on the patched UNet, peft adapters with
random weights, a fine-tuned ``conv_in``, a ControlNet object pickled under the official
``models.*`` class paths, the masked-attention processor tensors, plus extra keys and LoRA entries
for removed modules that a loader must tolerate.

Built once per test session (module-level memo), in a pytest temporary folder.
"""

from __future__ import annotations

import copy
import json
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from magicbokeh.diffusion.reference import official_unet_lora_targets, official_vae_lora_targets

TILE = 64  # tiny tile: UNet sample_size 16 × VAE factor 4

TINY_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 32, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(2, 2, 4),
    cross_attention_dim=32,
    layers_per_block=1,
    use_linear_projection=True,
    norm_num_groups=8,
)
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(16, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.18215,
)
# SD2.1-base scheduler/scheduler_config.json (a PNDM config; note clip_sample false)
SD21_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
COND_CHANNELS = (8, 16, 16)  # two stride-2 convs: condition at 1/4 resolution, like the VAE
RANK_UNET, RANK_VAE, RANK_ATTN = 4, 4, 8

REMOVED_TARGET = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q"


@dataclass
class TinyAssets:
    base_dir: Path
    ckpt_path: Path
    raw: dict  # the dict that was pickled (for corrupting copies)
    controlnet_state: dict  # expected flattened ControlNet weights
    controlnet_config: dict


def _randomise_lora(model, gen: torch.Generator, std: float = 0.05) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def _official_classes():
    """Subclasses of the diffusers classes that pickle under the official ``models.*`` paths."""
    from diffusers import ControlNetModel
    from diffusers.models.attention import BasicTransformerBlock, FeedForward
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from diffusers.models.unets.unet_2d_blocks import CrossAttnDownBlock2D, DownBlock2D

    layout = {
        "models.controlnet": (ControlNetModel, ControlNetConditioningEmbedding),
        "models.unet_2d_blocks": (CrossAttnDownBlock2D, DownBlock2D),
        "models.transformer_2d": (Transformer2DModel,),
        "models.attention": (BasicTransformerBlock, FeedForward),
    }
    modules, mapping = {"models": types.ModuleType("models")}, {}
    for mod_name, classes in layout.items():
        module = types.ModuleType(mod_name)
        for cls in classes:
            sub = type(cls.__name__, (cls,), {"__module__": mod_name, "__qualname__": cls.__name__})
            setattr(module, cls.__name__, sub)
            mapping[cls] = sub
        modules[mod_name] = module
    return modules, mapping


def save_official_checkpoint(path: Path, raw: dict) -> None:
    """``torch.save`` with the official ``models.*`` modules registered only while pickling."""
    modules, _ = _official_classes.cache  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        torch.save(raw, path)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _build(folder: Path) -> TinyAssets:
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from diffusers.models.attention import BasicTransformerBlock
    from peft import LoraConfig

    gen = torch.Generator().manual_seed(1234)
    base = folder / "tiny-sd21-base"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY_UNET).eval()
    torch.manual_seed(1)
    vae = AutoencoderKL(**TINY_VAE).eval()
    unet.save_pretrained(base / "unet")
    vae.save_pretrained(base / "vae")
    (base / "scheduler").mkdir(parents=True)
    (base / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD21_SCHEDULER, indent=2))

    # -- the "official" patched UNet with peft adapters (as magicbokeh.py builds it)
    official = copy.deepcopy(unet)
    del official.mid_block
    for m in official.modules():
        if isinstance(m, BasicTransformerBlock):
            del m.attn2, m.norm2
    enc, dec, others = official_unet_lora_targets(official)
    assert len(enc) > 10 and len(dec) > 10 and not others
    official.add_adapter(LoraConfig(r=RANK_UNET, init_lora_weights="gaussian", target_modules=enc), "default_encoder")
    official.add_adapter(LoraConfig(r=RANK_UNET, init_lora_weights="gaussian", target_modules=dec), "default_decoder")
    _randomise_lora(official, gen)
    with torch.no_grad():  # the fine-tuned base conv_in
        official.conv_in.base_layer.weight.add_(torch.randn(official.conv_in.base_layer.weight.shape, generator=gen) * 0.05)
        official.conv_in.base_layer.bias.add_(torch.randn(official.conv_in.base_layer.bias.shape, generator=gen) * 0.05)
    sd_unet = {n: p.detach().clone() for n, p in official.named_parameters() if "lora" in n or "conv_in" in n}
    # entries for modules the patched UNet lacks: must be tolerated
    for removed in (REMOVED_TARGET, "mid_block.resnets.0.conv1"):
        sd_unet[f"{removed}.lora_A.default_encoder.weight"] = torch.randn(RANK_UNET, 32, generator=gen)
        sd_unet[f"{removed}.lora_B.default_encoder.weight"] = torch.randn(32, RANK_UNET, generator=gen)

    vae_peft = copy.deepcopy(vae)
    vae_targets = official_vae_lora_targets(vae_peft)
    vae_peft.add_adapter(LoraConfig(r=RANK_VAE, init_lora_weights="gaussian", target_modules=vae_targets), "default_encoder")
    _randomise_lora(vae_peft, gen)
    sd_vae = {n: p.detach().clone() for n, p in vae_peft.named_parameters() if "lora" in n}

    processors = {}
    for name in official.attn_processors:
        if "up_blocks" in name and name.endswith("attn1.processor"):
            d = dict(official.named_modules())[name[: -len(".processor")]].to_q.base_layer.in_features
            for attr in ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora"):
                processors[f"{name}.{attr}.0.weight"] = torch.randn(RANK_ATTN, d, generator=gen) * 0.3
                processors[f"{name}.{attr}.1.weight"] = torch.randn(d, RANK_ATTN, generator=gen) * 0.3
    assert len(processors) == 4 * 8  # 4 up-block attentions in the tiny UNet

    # -- the ControlNet object: stock, mid block and cross-attention deleted, trained (random) weights
    torch.manual_seed(2)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=COND_CHANNELS)
    with torch.no_grad():
        for name, p in cn.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * (0.3 if "controlnet_" in name else 0.01))
    del cn.mid_block, cn.controlnet_mid_block
    for m in cn.modules():
        if isinstance(m, BasicTransformerBlock):
            del m.attn2, m.norm2
    cn.eval()
    cn_state = {k: v.detach().clone() for k, v in cn.state_dict().items()}
    cn_config = dict(cn.config)
    _, mapping = _official_classes.cache  # type: ignore[attr-defined]
    for m in cn.modules():
        if type(m) in mapping:
            m.__class__ = mapping[type(m)]

    raw = {
        "rank_unet": RANK_UNET,
        "unet_lora_encoder_modules": enc + [REMOVED_TARGET],
        "unet_lora_decoder_modules": dec,
        "unet_lora_others_modules": others,
        "state_dict_unet": sd_unet,
        "rank_vae": RANK_VAE,
        "vae_lora_encoder_modules": vae_targets,
        "state_dict_vae": sd_vae,
        "controlnet": cn,
        "state_dict_attn": RANK_ATTN,
        "processor_state_dict": processors,
        "training_note": "keys unknown to the loader are ignored",
    }
    ckpt = folder / "lora.pkl"
    save_official_checkpoint(ckpt, raw)
    return TinyAssets(base, ckpt, raw, cn_state, cn_config)


_official_classes.cache = _official_classes()  # type: ignore[attr-defined]
_ASSETS: dict[str, TinyAssets] = {}


def get_tiny_assets(tmp_path_factory) -> TinyAssets:
    """Build (once per session) and return the tiny base folder and ``lora.pkl``."""
    if "assets" not in _ASSETS:
        with warnings.catch_warnings():  # peft notes the second adapter on one model; intended
            warnings.simplefilter("ignore", UserWarning)
            _ASSETS["assets"] = _build(tmp_path_factory.mktemp("magicbokeh-diffusion"))
    return _ASSETS["assets"]


@pytest.fixture
def tiny_assets(tmp_path_factory) -> TinyAssets:
    return get_tiny_assets(tmp_path_factory)


@pytest.fixture
def torch_single_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a busy 2-core host
    OpenMP barriers between oversubscribed threads make small ops very slow."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def diffusion_cache(tmp_path, monkeypatch) -> Path:
    """A private converted-weights cache and a fresh model memo for each test."""
    from magicbokeh.diffusion.loading import clear_loaded_models

    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "mb-cache"))
    clear_loaded_models()
    yield tmp_path / "mb-cache"
    clear_loaded_models()


def scene(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random photo (H, W, 3) in [0.05, 0.95] and a disparity ramp with a near blob."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    img = np.kron(small, np.ones((8, 8, 1), np.float32))[:h, :w]
    img = (0.05 + 0.9 * img).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    disp = 0.2 + 0.3 * yy / max(h - 1, 1)
    disp[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2] = 0.9
    return img, disp.astype(np.float32)


def tiny_options(assets: TinyAssets, **extra) -> dict:
    """Backend options pointing at the tiny local weights, CPU fp32, SDPA."""
    return {"base": str(assets.base_dir), "checkpoint": str(assets.ckpt_path), "device": "cpu",
            "dtype": "fp32", "attention": "sdpa", **extra}  # fmt: skip
