"""``load_magicbokeh``: build the inference-ready MagicBokeh networks (spec §4.6, §12).

First start: fetch the SD2.1 UNet/VAE/scheduler and ``lora.pkl``, read the checkpoint with the
restricted unpickler, patch the UNet (no mid block, no cross-attention), put the fine-tuned
``conv_in`` in, merge the UNet and VAE-encoder LoRA into the weights (scale 8/r), load the
ControlNet strictly, install the focus-masked processors with their weights, cast, and write the
result to a safetensors cache keyed by the source files and dtype. Later starts read only that
cache (no pickle, no merge).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from ..cache import ENV_CACHE_DIR
from ..cache import cache_dir as cache_dir_for
from ..errors import MagicBokehError, preview_names
from ..publish import publish_folder
from .attention import set_kernel
from .checkpoint import (
    UNET_DECODER_ADAPTER,
    UNET_ENCODER_ADAPTER,
    VAE_ADAPTER,
    MagicBokehCheckpoint,
    read_checkpoint,
)
from .forward import OneStepConstants, x0_from_eps
from .devices import SHORT_DTYPE, resolve_device, resolve_dtype, resolve_kernel
from .lora import merge_lora
from .models import FocusControlNet, install_processors, patch_unet, set_plain_processors, unet_from_config
from .sources import checkpoint_files, fetch_base, fetch_checkpoint, fingerprint, resolve_sources

logger = logging.getLogger(__name__)

#: Bump when the cached layout or the conversion changes.
CACHE_FORMAT = 1
_REMOVED_PREFIXES = ("mid_block.", "controlnet_mid_block.")
_PROCESSOR_ATTRS = ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora")

LoadProgress = Callable[[float, str], None]


@dataclass
class MagicBokehModel:
    """The three networks plus the constants of the one-step x0 prediction.

    Attributes:
        unet, controlnet, vae: eval-mode networks on ``device`` in ``dtype``.
        alpha_prod_t: ᾱ at ``timestep`` (0-d float32 CPU tensor), from the scheduler config.
        timestep: the fixed step (``num_train_timesteps - 1`` = 999).
        scaling_factor: VAE latent scale (0.18215 for SD2.1).
        vae_scale_factor: pixels per latent cell (8).
        tile_size: pixel tile (UNet ``sample_size`` × VAE factor = 512).
        kernel: attention kernel of every processor (``sdpa``, ``xformers`` or ``naive``).
        key: identity of the weights + device + dtype (keys the latent cache).
        info: sources, ranks and whether the converted cache was used.
    """

    unet: UNet2DConditionModel
    controlnet: FocusControlNet
    vae: AutoencoderKL
    device: torch.device
    dtype: torch.dtype
    alpha_prod_t: torch.Tensor
    timestep: int
    scaling_factor: float
    vae_scale_factor: int
    tile_size: int
    kernel: str
    key: str
    info: dict[str, Any] = field(default_factory=dict)
    clip_sample: float | None = None

    @property
    def constants(self) -> OneStepConstants:
        """The one-step constants as used by ``forward`` (shared with training)."""
        return OneStepConstants(self.timestep, self.alpha_prod_t, self.clip_sample, self.scaling_factor,
                                self.vae_scale_factor)

    def x0_from_eps(self, latent: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One DDPM step from t = 999 to the end: ``(z − √(1−ᾱ)·ε̂) / √ᾱ`` in float32 (``forward.x0_from_eps``).

        The official fp16 run computes this step in fp16, so under fp16 ours differs from it by fp16
        rounding (kept in fp32 on purpose).
        """
        return x0_from_eps(latent, eps, self.alpha_prod_t, self.clip_sample)

    def describe(self) -> str:
        return f"{self.device.type} {SHORT_DTYPE[self.dtype]} ({self.kernel} attention)"


def ddpm_scheduler(scheduler_config: Mapping[str, Any]) -> DDPMScheduler:
    """The base model's scheduler config read as ``DDPMScheduler``, as the official code does."""
    import inspect

    allowed = set(inspect.signature(DDPMScheduler.__init__).parameters)
    return DDPMScheduler.from_config({k: v for k, v in dict(scheduler_config).items() if k in allowed})


def alpha_prod_at_last_step(scheduler_config: Mapping[str, Any]) -> tuple[torch.Tensor, int, float | None]:
    """(ᾱ_t, t, clip) for t = ``num_train_timesteps - 1`` (SD2.1: ᾱ = 0.0046600951, no clipping).

    ``clip`` is the x0 clamp range when the config sets ``clip_sample`` (DDPMScheduler's default
    when the key is absent), else None.
    """
    scheduler = ddpm_scheduler(scheduler_config)
    cfg = scheduler.config
    if cfg.prediction_type != "epsilon" or cfg.thresholding:
        raise MagicBokehError(
            f"the base scheduler predicts {cfg.prediction_type!r} (thresholding={cfg.thresholding}); "
            "MagicBokeh needs an epsilon-prediction SD2.1-base model."
        )
    t = cfg.num_train_timesteps - 1
    clip = float(cfg.clip_sample_range) if cfg.clip_sample else None
    return scheduler.alphas_cumprod[t].clone(), t, clip


# ---------------------------------------------------------------------------------------------
# Assembly from the base networks and the checkpoint


def assemble(
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    ckpt: MagicBokehCheckpoint,
    *,
    kernel: str = "sdpa",
    source: str = "lora.pkl",
) -> tuple[UNet2DConditionModel, FocusControlNet, AutoencoderKL, dict[str, Any]]:
    """Turn stock SD2.1 ``unet``/``vae`` (fp32, CPU) plus ``ckpt`` into the MagicBokeh networks.

    Modifies ``unet`` and ``vae`` in place. Returns (unet, controlnet, vae, report).

    Raises:
        MagicBokehError: missing or wrong-shape tensors, with the offending names.
    """
    # 1. UNet: remove mid block and cross-attention, take the fine-tuned conv_in base.
    patch_unet(unet)
    _load_conv_in(unet, ckpt.state_dict_unet, source)
    # 2. Merge both UNet adapters and the VAE-encoder adapter (scale 8 / r).
    r_enc = merge_lora(
        unet, ckpt.state_dict_unet, ckpt.unet_encoder_modules, adapter=UNET_ENCODER_ADAPTER,
        rank=ckpt.rank_unet, what="UNet", source=f"{source} state_dict_unet",
    )  # fmt: skip
    r_dec = merge_lora(
        unet, ckpt.state_dict_unet, ckpt.unet_decoder_modules, adapter=UNET_DECODER_ADAPTER,
        rank=ckpt.rank_unet, what="UNet", source=f"{source} state_dict_unet",
    )  # fmt: skip
    r_vae = merge_lora(
        vae, ckpt.state_dict_vae, ckpt.vae_modules, adapter=VAE_ADAPTER,
        rank=ckpt.rank_vae, what="VAE encoder", source=f"{source} state_dict_vae",
    )  # fmt: skip
    # 3. ControlNet from the pickled weights, strictly.
    cn_overrides = {**ckpt.controlnet_config, **conditioning_layout(ckpt.controlnet_state_dict)}
    cn_config = FocusControlNet.config_from_unet(unet.config, **cn_overrides)
    with torch.device("meta"):
        controlnet = FocusControlNet.from_config(cn_config)
    load_weights(controlnet, ckpt.controlnet_state_dict, what="ControlNet", source=f"{source} controlnet")
    set_plain_processors(controlnet, kernel)
    # 4. Focus-masked processors and their LoRA (scale 1 / r_a).
    focus_names = install_processors(unet, rank=ckpt.rank_attn, kernel=kernel)
    _load_processors(unet, focus_names, ckpt.processor_state_dict, source)
    absent = sorted(set(r_enc.absent_targets) | set(r_dec.absent_targets) | set(r_vae.absent_targets))
    report = {
        "rank_unet": ckpt.rank_unet,
        "rank_vae": ckpt.rank_vae,
        "rank_attn": ckpt.rank_attn,
        "merged_unet": len(r_enc.merged) + len(r_dec.merged),
        "merged_vae": len(r_vae.merged),
        "ignored_targets": absent,
        "focus_layers": len(focus_names),
    }
    logger.info(
        "MagicBokeh assembled: %d UNet + %d VAE LoRA layers merged, %d focus layers, %d absent targets ignored",
        report["merged_unet"], report["merged_vae"], len(focus_names), len(absent),
    )  # fmt: skip
    return unet, controlnet, vae, report


def conditioning_layout(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Conditioning-embedding widths read off the weights (the pickled config may be absent)."""
    prefix = "controlnet_cond_embedding."
    first = state.get(prefix + "conv_in.weight")
    if first is None:
        return {}
    widths = [first.shape[0]]
    i = 1
    while prefix + f"blocks.{i}.weight" in state:  # odd blocks are the stride-2 widenings
        widths.append(state[prefix + f"blocks.{i}.weight"].shape[0])
        i += 2
    return {"conditioning_channels": first.shape[1], "conditioning_embedding_out_channels": tuple(widths)}


def _load_conv_in(unet: UNet2DConditionModel, sd: Mapping[str, torch.Tensor], source: str) -> None:
    keys = ("conv_in.base_layer.weight", "conv_in.base_layer.bias")
    missing = [k for k in keys if k not in sd]
    if missing:
        raise MagicBokehError(
            f"{source} state_dict_unet lacks the fine-tuned {', '.join(missing)}; "
            "it is not a complete MagicBokeh checkpoint."
        )
    with torch.no_grad():
        for key, param in zip(keys, (unet.conv_in.weight, unet.conv_in.bias)):
            _check_shape(sd[key], param, f"{source} state_dict_unet[{key!r}]")
            param.copy_(sd[key].to(param.dtype))


def _load_processors(unet: nn.Module, names: list[str], sd: Mapping[str, torch.Tensor], source: str) -> None:
    wanted = {
        f"{name}.{attr}.{i}.weight": None for name in names for attr in _PROCESSOR_ATTRS for i in (0, 1)
    }
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise MagicBokehError(
            f"{source} processor_state_dict is missing {len(missing)} tensor(s): {preview_names(missing)}."
        )
    extra = [k for k in sd if k not in wanted]
    if extra:
        logger.info("%s: %d processor tensors for absent layers ignored", source, len(extra))
    params = dict(unet.named_parameters())
    with torch.no_grad():
        for key in wanted:
            _check_shape(sd[key], params[key], f"{source} processor_state_dict[{key!r}]")
            params[key].copy_(sd[key].to(params[key].dtype))


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], *, what: str, source: str) -> None:
    """Strict ``load_state_dict(assign=True)`` with errors that name keys and shapes.

    Keys of modules the MagicBokeh networks deliberately lack (mid block, cross-attention) are
    ignored; any other unexpected key, every missing key and every shape mismatch is an error.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    removed = [k for k in unexpected if is_removed_module(k)]
    unexpected = [k for k in unexpected if not is_removed_module(k)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {preview_names(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {preview_names(unexpected)}")
        raise MagicBokehError(
            f"{source} does not fit the {what}: {'; '.join(parts)}. "
            "The checkpoint does not match this base model."
        )
    if removed:
        logger.info("%s: ignored %d tensors of removed modules (mid block / cross-attention)", source, len(removed))
    for key, ref in own.items():
        _check_shape(state[key], ref, f"{source}[{key!r}]")
    model.load_state_dict({k: state[k] for k in own}, strict=True, assign=True)


def is_removed_module(key: str) -> bool:
    """True for a ControlNet key of a module the official model removed (mid block, cross-attention)."""
    return key.startswith(_REMOVED_PREFIXES) or ".attn2." in key or (
        ".transformer_blocks." in key and ".norm2." in key
    )


def _check_shape(tensor: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    if tuple(tensor.shape) != tuple(ref.shape):
        raise MagicBokehError(
            f"{what} has shape {list(tensor.shape)} but the network needs {list(ref.shape)}; "
            "the checkpoint does not match this base model."
        )
    if not tensor.is_floating_point():
        raise MagicBokehError(f"{what} has dtype {tensor.dtype}; expected floating-point weights.")



# ---------------------------------------------------------------------------------------------
# Converted-weights cache


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Folder of converted weights: argument → ``$MAGICBOKEH_CACHE_DIR`` → ``~/.cache/magicbokeh``.

    ``off`` / ``none`` / ``0`` disables the cache.
    """
    return cache_dir_for("diffusion", cache_dir)


def cache_key(source_files: list[Path], dtype: torch.dtype) -> str:
    """Hash of the cache format, dtype and source-file fingerprints (path, size, mtime)."""
    payload = {"format": CACHE_FORMAT, "dtype": str(dtype), "sources": fingerprint(source_files)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _config_json(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items() if not k.startswith("_")}


def save_converted(folder: Path, unet, controlnet, vae, meta: dict[str, Any]) -> None:
    """Write the converted networks as safetensors + ``meta.json`` (atomic rename)."""
    from safetensors.torch import save_file

    # if_exists="keep": when another process won the race its copy is identical.
    with publish_folder(folder, if_exists="keep") as tmp:
        for name, model in (("unet", unet), ("controlnet", controlnet), ("vae", vae)):
            state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / f"{name}.safetensors"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def load_converted(
    folder: Path, device: torch.device, kernel: str
) -> tuple[UNet2DConditionModel, FocusControlNet, AutoencoderKL, dict[str, Any]]:
    """Networks from a converted cache folder, built on the meta device and filled by assignment."""
    from safetensors.torch import load_file

    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != CACHE_FORMAT:
        raise MagicBokehError(f"converted cache {folder} has format {meta.get('format')}; expected {CACHE_FORMAT}")
    with torch.device("meta"):
        unet = unet_from_config(meta["unet_config"])
        install_processors(unet, rank=int(meta["rank_attn"]), kernel=kernel)
        controlnet = FocusControlNet.from_config(meta["controlnet_config"])
        vae = AutoencoderKL.from_config(meta["vae_config"])
    dev = str(device) if device.type != "mps" else "cpu"  # safetensors reads to CPU for MPS
    for name, model in (("unet", unet), ("controlnet", controlnet), ("vae", vae)):
        state = load_file(str(folder / f"{name}.safetensors"), device=dev)
        load_weights(model, state, what=name, source=str(folder / f"{name}.safetensors"))
    set_plain_processors(controlnet, kernel)
    return unet, controlnet, vae, meta


# ---------------------------------------------------------------------------------------------
# Entry point


_MODELS: dict[tuple, MagicBokehModel] = {}
_LOAD_LOCK = threading.Lock()


def load_magicbokeh(
    base: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    attention: str | None = "auto",
    compile: bool = False,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    progress: LoadProgress | None = None,
) -> MagicBokehModel:
    """Load the MagicBokeh networks, once per process per (sources, device, dtype, kernel).

    Args:
        base: SD2.1-base folder or Hub repo id (else ``$MAGICBOKEH_BASE``, else the default mirror).
        checkpoint: ``lora.pkl`` path, a trained-weights folder (``DIR/final``) or Hub
            ``owner/repo[/file]`` (else ``$MAGICBOKEH_CHECKPOINT``). Without ``base``, a trained
            folder's recorded base model is used.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        dtype: ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"`` (auto: fp16 CUDA, bf16 capable CPU).
        attention: ``"auto"`` (xformers on CUDA when it works, else SDPA), ``"sdpa"``, ``"xformers"``.
        compile: ``torch.compile`` the ControlNet, the VAE and the UNet's ResNet blocks (CUDA).
        cache_dir: converted-weights cache root (``"off"`` disables it).
        local_files_only: never download (default: only when offline).
        progress: ``progress(fraction, stage)`` during loading.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    kernel = resolve_kernel(attention, dev)
    base_src, ckpt_src = resolve_sources(base, checkpoint)
    memo_key = (base_src.describe(), ckpt_src.describe(), str(dev), dt, kernel, bool(compile), str(cache_root(cache_dir)))
    with _LOAD_LOCK:
        if memo_key not in _MODELS:
            _MODELS.clear()  # one model per process: drop the previous one before loading another
            _MODELS[memo_key] = _load(base_src, ckpt_src, dev, dt, kernel, compile, cache_dir, local_files_only, progress)
        return _MODELS[memo_key]


def _load(base_src, ckpt_src, dev, dt, kernel, compile, cache_dir, local_files_only, progress) -> MagicBokehModel:
    report = progress or (lambda f, s: None)
    t0 = time.perf_counter()

    report(0.0, "locating MagicBokeh weights")
    base_files = fetch_base(base_src, local_files_only=local_files_only)
    ckpt_path = fetch_checkpoint(ckpt_src, local_files_only=local_files_only)
    sources = base_files.all() + checkpoint_files(ckpt_path)
    key = cache_key(sources, dt)
    root = cache_root(cache_dir)
    folder = root / key if root is not None else None

    info: dict[str, Any] = {"base": base_src.describe(), "checkpoint": ckpt_src.describe()}
    models = None
    if folder is not None and (folder / "meta.json").is_file():
        report(0.2, "reading converted MagicBokeh weights")
        try:
            unet, controlnet, vae, meta = load_converted(folder, dev, kernel)
            models = (unet, controlnet, vae)
            info.update(meta.get("report", {}), converted_cache=str(folder), from_cache=True)
            scheduler_config = meta["scheduler_config"]
        except (MagicBokehError, OSError, KeyError, ValueError, RuntimeError) as exc:
            logger.warning("converted cache %s unusable (%s); converting again", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
    if models is None:
        report(0.1, "converting MagicBokeh checkpoint (first run only)")
        ckpt = read_checkpoint(ckpt_path)
        unet = UNet2DConditionModel.from_pretrained(str(base_files.root), subfolder="unet", torch_dtype=torch.float32)
        vae = AutoencoderKL.from_pretrained(str(base_files.root), subfolder="vae", torch_dtype=torch.float32)
        scheduler_config = json.loads(base_files.scheduler_config.read_text())
        unet, controlnet, vae, assembly = assemble(unet, vae, ckpt, kernel=kernel, source=ckpt_path.name)
        del ckpt
        for model in (unet, controlnet, vae):
            _cast(model, dtype=dt)
        info.update(assembly, from_cache=False)
        if folder is not None:
            report(0.6, "saving converted weights")
            meta = {
                "format": CACHE_FORMAT,
                "dtype": str(dt),
                "unet_config": _config_json(unet.config),
                "controlnet_config": _config_json(controlnet.config),
                "vae_config": _config_json(vae.config),
                "scheduler_config": scheduler_config,
                "rank_attn": assembly["rank_attn"],
                "report": assembly,
                "sources": {"base": base_src.describe(), "checkpoint": ckpt_src.describe()},
            }
            try:
                save_converted(folder, unet, controlnet, vae, meta)
                info["converted_cache"] = str(folder)
            except OSError as exc:  # a full or read-only disk only costs the next start time
                logger.warning("could not write the converted-weights cache %s: %s", folder, exc)
        models = (unet, controlnet, vae)

    report(0.8, f"moving MagicBokeh to {dev.type}")
    model = finalize(*models, scheduler_config=scheduler_config, device=dev, dtype=dt, kernel=kernel,
                     compile=compile, key=f"{key}:{dev}:{kernel}", info=info)  # fmt: skip
    model.info["load_seconds"] = round(time.perf_counter() - t0, 2)
    logger.info("MagicBokeh loaded in %.1f s on %s", model.info["load_seconds"], model.describe())
    report(1.0, "MagicBokeh ready")
    return model


def finalize(
    unet: UNet2DConditionModel,
    controlnet: FocusControlNet,
    vae: AutoencoderKL,
    *,
    scheduler_config: Mapping[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    kernel: str = "sdpa",
    compile: bool = False,
    key: str = "",
    info: dict[str, Any] | None = None,
) -> MagicBokehModel:
    """Move/cast assembled networks and wrap them with the one-step constants."""
    for m in (unet, controlnet, vae):
        _cast(m, device=device, dtype=dtype)
        m.eval()
        m.requires_grad_(False)
        set_kernel(m, kernel)
    # The VAE is all convolutions at up to 512x512: NHWC is ~20 % faster for its decoder on CPU
    # (oneDNN) and the preferred layout for cuDNN; the maths is unchanged.
    _cast(vae, memory_format=torch.channels_last)
    for m in (unet, controlnet, vae):
        if any(t.is_meta for t in list(m.parameters()) + list(m.buffers())):
            raise MagicBokehError(f"{type(m).__name__} still has unloaded (meta) tensors after loading.")
    if device.type == "cuda":
        # Tiles have one fixed size, so cuDNN's per-shape autotuning is paid once and then reused.
        torch.backends.cudnn.benchmark = True
    alpha, t, clip = alpha_prod_at_last_step(scheduler_config)
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if compile:
        compile_for_inference(unet, controlnet, vae)
    return MagicBokehModel(
        unet=unet,
        controlnet=controlnet,
        vae=vae,
        device=device,
        dtype=dtype,
        alpha_prod_t=alpha,
        timestep=t,
        scaling_factor=float(vae.config.scaling_factor),
        vae_scale_factor=vae_factor,
        tile_size=int(unet.config.sample_size) * vae_factor,
        kernel=kernel,
        key=key or f"{id(unet)}:{device}:{kernel}",
        info=dict(info or {}),
        clip_sample=clip,
    )


def compile_for_inference(unet: UNet2DConditionModel, controlnet: FocusControlNet, vae: AutoencoderKL) -> None:
    """``torch.compile`` the parts with fixed shapes and plain inputs, in place.

    The ControlNet and the VAE encoder/decoder are compiled whole; in the UNet, every ResNet block
    and up/down-sampler. The UNet's attention layers stay eager: their per-call focus-mask
    argument would make dynamo guard on (and recompile for) every new mask object. Tiles are
    always the same size, so each graph compiles once (the first render is slow).
    """
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

    for module in (controlnet, vae.encoder, vae.decoder):
        module.compile(dynamic=False)
    for module in unet.modules():
        if isinstance(module, (ResnetBlock2D, Downsample2D, Upsample2D)):
            module.compile(dynamic=False)


def _cast(model: nn.Module, **kwargs: Any) -> None:
    # nn.Module.to directly: diffusers' ModelMixin.to warns about fp32-pinned modules on every
    # dtype change, and these networks pin none.
    nn.Module.to(model, **kwargs)


def clear_loaded_models() -> None:
    """Forget the process-wide model (frees its memory once no pipeline holds it)."""
    with _LOAD_LOCK:
        _MODELS.clear()


__all__ = [
    "CACHE_FORMAT",
    "ENV_CACHE_DIR",
    "MagicBokehModel",
    "alpha_prod_at_last_step",
    "assemble",
    "cache_key",
    "cache_root",
    "clear_loaded_models",
    "conditioning_layout",
    "ddpm_scheduler",
    "finalize",
    "is_removed_module",
    "load_magicbokeh",
    "load_weights",
]
