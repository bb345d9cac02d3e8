"""Convert upstream Depth Anything V2 checkpoints (the official ``DAdepth.pth``) to transformers.

``DAdepth.pth`` is MagicBokeh's degradation-aware Depth Anything V2 ViT-L in the upstream layout:
a dict whose ``"model"`` entry holds the state dict with DDP ``module.`` prefixes. This module maps
it onto transformers' ``DepthAnythingForDepthEstimation`` through an explicit key map
(:func:`rename_keys` + :func:`split_qkv`), reads it without executing code from the file
(``torch.load(weights_only=True)``), and writes a standard transformers folder (``config.json`` +
``model.safetensors`` + ``preprocessor_config.json``) that loads with no magicbokeh import.

:func:`converted_folder` converts once into the project cache, so later starts read no pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .. import hub
from ..cache import cache_dir
from ..errors import MagicBokehError, preview_names
from ..state_dicts import read_state_dict
from ..publish import publish_text, publish_folder
from .sources import DADEPTH_FILENAME, checkpoint_hub_file

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import DepthAnythingConfig

logger = logging.getLogger(__name__)

#: Bump when the converted layout changes, so stale cache entries are not reused.
CONVERSION_FORMAT = 1
_COMPLETE_MARKER = "conversion.json"
#: What a conversion writes: a folder holding only these may be replaced by a new conversion.
CONVERTED_FILES = frozenset({"config.json", "model.safetensors", "preprocessor_config.json", _COMPLETE_MARKER})

#: The official checkpoint's architecture: DepthAnythingV2(encoder="vitl", features=256,
#: out_channels=[256, 512, 1024, 1024]) with DINOv2 ViT-L/14 at 518 px (official-model.md §6).
VITL_CONFIG: dict[str, Any] = {
    "backbone_config": {
        "model_type": "dinov2",
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "mlp_ratio": 4,
        "patch_size": 14,
        "image_size": 518,
        "layerscale_value": 1.0,
        "out_indices": [5, 12, 18, 24],
        "apply_layernorm": True,
        "reshape_hidden_states": False,
    },
    "reassemble_hidden_size": 1024,
    "reassemble_factors": [4, 2, 1, 0.5],
    "neck_hidden_sizes": [256, 512, 1024, 1024],
    "fusion_hidden_size": 256,
    "head_hidden_size": 32,
    "depth_estimation_type": "relative",
}

#: Preprocessing that matches the official resize rule as closely as transformers' processor can
#: (the project itself uses :mod:`magicbokeh.depth.depth_anything`, which reproduces it exactly).
PREPROCESSOR_CONFIG: dict[str, Any] = {
    "image_processor_type": "DPTImageProcessor",
    "do_resize": True,
    "size": {"height": 518, "width": 518},
    "keep_aspect_ratio": True,
    "ensure_multiple_of": 14,
    "resample": 3,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "do_pad": False,
}


def vitl_config() -> "DepthAnythingConfig":
    """The transformers config of the official ViT-L checkpoint."""
    from transformers import DepthAnythingConfig

    return DepthAnythingConfig(**json.loads(json.dumps(VITL_CONFIG)))


def load_config(path: str | os.PathLike | None) -> "DepthAnythingConfig":
    """A transformers ``config.json`` (file or folder), or the ViT-L config when ``path`` is None."""
    if path is None:
        return vitl_config()
    from transformers import DepthAnythingConfig

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise MagicBokehError(f"config {path} not found; pass a transformers config.json (or its folder).")
    try:
        config = DepthAnythingConfig.from_json_file(str(p))
    except (ValueError, OSError, TypeError) as exc:
        raise MagicBokehError(f"cannot read config {p}: {exc}") from None
    if getattr(config, "model_type", "") != "depth_anything":
        raise MagicBokehError(f"config {p} is not a Depth Anything config (model_type {config.model_type!r}).")
    return config


# ---------------------------------------------------------------------------------------------
# Key map (upstream name -> transformers file name)
# ---------------------------------------------------------------------------------------------


def rename_keys(config: "DepthAnythingConfig") -> list[tuple[str, str]]:
    """(upstream key, transformers key) pairs for every tensor except the fused ``attn.qkv``.

    Upstream names are those of ``DepthAnythingV2.state_dict()`` without the ``module.`` prefix;
    transformers names are those ``save_pretrained`` writes (the on-disk format).
    """
    layers = config.backbone_config.num_hidden_layers
    stages = len(config.neck_hidden_sizes)
    pairs: list[tuple[str, str]] = [
        ("pretrained.cls_token", "backbone.embeddings.cls_token"),
        ("pretrained.mask_token", "backbone.embeddings.mask_token"),
        ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
        ("pretrained.patch_embed.proj.weight", "backbone.embeddings.patch_embeddings.projection.weight"),
        ("pretrained.patch_embed.proj.bias", "backbone.embeddings.patch_embeddings.projection.bias"),
        ("pretrained.norm.weight", "backbone.layernorm.weight"),
        ("pretrained.norm.bias", "backbone.layernorm.bias"),
    ]
    # fmt: off
    for i in range(layers):
        src, dst = f"pretrained.blocks.{i}", f"backbone.encoder.layer.{i}"
        pairs += [
            (f"{src}.ls1.gamma", f"{dst}.layer_scale1.lambda1"),
            (f"{src}.ls2.gamma", f"{dst}.layer_scale2.lambda1"),
            (f"{src}.attn.proj.weight", f"{dst}.attention.output.dense.weight"),
            (f"{src}.attn.proj.bias", f"{dst}.attention.output.dense.bias"),
        ]
        for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            pairs += [(f"{src}.{name}.{p}", f"{dst}.{name}.{p}") for p in ("weight", "bias")]
    for i, factor in enumerate(config.reassemble_factors[:stages]):
        for p in ("weight", "bias"):
            pairs.append((f"depth_head.projects.{i}.{p}", f"neck.reassemble_stage.layers.{i}.projection.{p}"))
            if factor != 1:  # factor 1 is an identity: no weights
                pairs.append((f"depth_head.resize_layers.{i}.{p}", f"neck.reassemble_stage.layers.{i}.resize.{p}"))
        pairs.append((f"depth_head.scratch.layer{i + 1}_rn.weight", f"neck.convs.{i}.weight"))
    for i in range(stages):
        # refinenet4 fuses the deepest features first: transformers numbers the fusion layers in
        # the order they run, so the upstream numbering is reversed.
        src, dst = f"depth_head.scratch.refinenet{stages - i}", f"neck.fusion_stage.layers.{i}"
        for p in ("weight", "bias"):
            pairs.append((f"{src}.out_conv.{p}", f"{dst}.projection.{p}"))
            for unit in (1, 2):
                for conv in (1, 2):
                    pairs.append((f"{src}.resConfUnit{unit}.conv{conv}.{p}",
                                  f"{dst}.residual_layer{unit}.convolution{conv}.{p}"))
    for p in ("weight", "bias"):
        pairs += [
            (f"depth_head.scratch.output_conv1.{p}", f"head.conv1.{p}"),
            (f"depth_head.scratch.output_conv2.0.{p}", f"head.conv2.{p}"),
            (f"depth_head.scratch.output_conv2.2.{p}", f"head.conv3.{p}"),
        ]
    # fmt: on
    return pairs


def qkv_keys(config: "DepthAnythingConfig") -> list[tuple[str, str]]:
    """(upstream fused qkv key, transformers prefix) for every attention block, weight and bias."""
    return [
        (f"pretrained.blocks.{i}.attn.qkv.{p}", f"backbone.encoder.layer.{i}.attention.attention|{p}")
        for i in range(config.backbone_config.num_hidden_layers)
        for p in ("weight", "bias")
    ]


def split_qkv(tensor: "torch.Tensor", prefix_and_param: str) -> dict[str, "torch.Tensor"]:
    """Split a fused qkv weight [3C, C] (or bias [3C]) into three equal row blocks, q, k, v order."""
    prefix, param = prefix_and_param.split("|")
    if tensor.shape[0] % 3:
        raise MagicBokehError(f"{prefix}: fused qkv {param} has {tensor.shape[0]} rows, not a multiple of 3.")
    q, k, v = tensor.chunk(3, dim=0)
    return {f"{prefix}.query.{param}": q.clone(), f"{prefix}.key.{param}": k.clone(),
            f"{prefix}.value.{param}": v.clone()}


def convert_state_dict(upstream: Mapping[str, "torch.Tensor"], config: "DepthAnythingConfig") -> dict[str, "torch.Tensor"]:
    """Upstream Depth Anything V2 state dict (no ``module.`` prefix) -> transformers file names.

    Raises:
        MagicBokehError: naming the missing and unexpected keys when the state dict does not match
            the config's architecture.
    """
    mapping = dict(rename_keys(config))
    fused = dict(qkv_keys(config))
    expected = set(mapping) | set(fused)
    missing = sorted(expected - set(upstream))
    unexpected = sorted(set(upstream) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {preview_names(missing, quote=False)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {preview_names(unexpected, quote=False)}")
        raise MagicBokehError(
            "the checkpoint does not match the Depth Anything V2 config "
            f"({config.backbone_config.num_hidden_layers} layers, hidden {config.backbone_config.hidden_size}): "
            + "; ".join(parts) + ". Pass the matching transformers config with --config."
        )
    out: dict[str, Any] = {dst: upstream[src].contiguous() for src, dst in mapping.items()}
    for src, dst in fused.items():
        out.update(split_qkv(upstream[src], dst))
    return out



# ---------------------------------------------------------------------------------------------
# Reading the official file safely
# ---------------------------------------------------------------------------------------------


def read_upstream_checkpoint(path: str | os.PathLike) -> dict[str, "torch.Tensor"]:
    """The upstream state dict from a ``.pth``: unwraps ``"model"``, strips ``module.`` prefixes.

    Reads with ``torch.load(weights_only=True)``: tensors and plain containers only. A pickle that
    names any code (a class, a function) is refused with the name it asked for.
    """
    state = read_state_dict(path, what="checkpoint", hint="Depth checkpoints must be plain state dicts.")
    check_finite(state, Path(path).name)
    return state


def check_finite(state: Mapping[str, "torch.Tensor"], label: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged or corrupted training run), naming them."""
    import torch

    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise MagicBokehError(
            f"{label} holds NaN or infinite weights in {len(bad)} tensor(s): {preview_names(bad, quote=False)}; "
            "the checkpoint is corrupted or from a diverged training run."
        )


# ---------------------------------------------------------------------------------------------
# Converting to a transformers folder
# ---------------------------------------------------------------------------------------------


def resolve_checkpoint_file(src: str) -> Path:
    """A local ``.pth`` path, ``dadepth``, or a Hub spec (``REPO`` or ``REPO/FILE.pth``) -> local file.

    Hub files come from the Hugging Face cache, downloaded on first use when the hub is reachable.
    """
    path = Path(src).expanduser()
    if path.is_file():
        return path
    if src != "dadepth" and (src.startswith((".", "/", "~")) or len(src.split("/")) < 2):
        raise MagicBokehError(f"checkpoint {src} not found; pass a .pth path, 'dadepth' or a Hub repo id.")
    repo, filename = checkpoint_hub_file(src)
    filename = filename or DADEPTH_FILENAME
    cached = hub.cached_file(repo, filename)
    if cached:
        return Path(cached)
    if not hub.hub_reachable():
        raise MagicBokehError(
            hub.missing_weights_message("DA depth", f"{repo}/{filename}", hint="pass a local .pth path")
        )
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear sentence
        raise MagicBokehError(f"cannot download {repo}/{filename}: {exc}") from None


def convert_dadepth(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert an upstream Depth Anything V2 ``.pth`` into a transformers folder.

    Args:
        src: a ``.pth`` path, ``"dadepth"`` (the official file) or a Hub spec ``REPO[/FILE.pth]``.
        out_dir: the folder to write (``config.json``, ``model.safetensors``,
            ``preprocessor_config.json``); replaced only once the new one is complete and verified.
        config: a transformers ``config.json`` for other model sizes; default the ViT-L config.
        overwrite: replace an ``out_dir`` that holds other files (see :func:`check_output_folder`).

    Returns:
        ``out_dir``.

    Raises:
        MagicBokehError: an ``out_dir`` that may not be replaced, an unreadable or hostile file,
            NaN/inf weights, missing/unexpected keys, or a tensor whose shape does not match the
            config (named). Checked before anything is written; a failure leaves ``out_dir`` as it was.
    """
    out = Path(out_dir).expanduser()
    local = Path(os.fspath(src)).expanduser()
    # Refused before a Hub download too; the source's folder is checked once it is known.
    check_output_folder(out, local if local.is_file() else None, overwrite=overwrite)
    pth = resolve_checkpoint_file(os.fspath(src))
    check_output_folder(out, pth, overwrite=overwrite)
    cfg = load_config(config)
    state = convert_state_dict(read_upstream_checkpoint(pth), cfg)
    with publish_folder(out) as tmp:
        _write_folder(tmp, state, cfg)
        count = len(state)
        del state  # the verification load below is the memory peak; don't hold a second copy
        verify_folder(tmp)
    logger.info("converted %s -> %s (%d tensors)", src, out, count)
    return out


def check_output_folder(out: Path, source: Path | None, *, overwrite: bool = False) -> None:
    """Refuse an output folder whose replacement would lose a user's files.

    Always refused: an existing file, the current folder or one of its parents, and a folder
    holding the source checkpoint. A non-empty folder is replaced only when it holds nothing but an
    earlier conversion's files (:data:`CONVERTED_FILES`), or with ``overwrite``.
    """
    resolved = out.resolve()
    if out.exists() and not out.is_dir():
        raise MagicBokehError(f"{str(out)!r} is a file; the output must be a folder (new, empty or an earlier conversion).")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path(resolved.anchor):
        raise MagicBokehError(
            f"refusing to replace {str(out)!r}: it is the current folder or one of its parents; name a new folder."
        )
    if source is not None and (resolved == source.resolve().parent or resolved in source.resolve().parents):
        raise MagicBokehError(
            f"refusing to replace {str(out)!r}: it holds the source checkpoint {source.name}; name a new folder."
        )
    if not out.is_dir() or overwrite:
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in CONVERTED_FILES)
    if others:
        raise MagicBokehError(
            f"{str(out)!r} is not empty and not an earlier conversion (it holds {preview_names(others)}); "
            "name a new or empty folder, or pass --overwrite to replace it."
        )


def _write_folder(folder: Path, state: Mapping[str, "torch.Tensor"], cfg: "DepthAnythingConfig") -> None:
    from safetensors.torch import save_file

    cfg.architectures = ["DepthAnythingForDepthEstimation"]
    cfg.save_pretrained(str(folder))
    save_file(dict(state), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")


def verify_folder(folder: str | os.PathLike) -> None:
    """Load a converted folder strictly: every tensor present and of the config's shape."""
    import torch
    from transformers import AutoModelForDepthEstimation

    try:
        _, info = AutoModelForDepthEstimation.from_pretrained(
            str(folder), local_files_only=True, output_loading_info=True, dtype=torch.float32,
            ignore_mismatched_sizes=True,  # reported below, tensor by tensor, instead of a bare error
        )
    except (RuntimeError, ValueError, OSError) as exc:
        text = str(exc).strip().splitlines()
        raise MagicBokehError(
            "the weights do not match the config: " + (text[0] if text else type(exc).__name__)
            + ". Pass the matching config with --config."
        ) from None
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        items = sorted(
            f"{x[0]} (file {tuple(x[1])}, config {tuple(x[2])})" if isinstance(x, (tuple, list)) else str(x)
            for x in (info.get(kind) or [])
        )
        if items:
            problems.append(f"{kind.replace('_', ' ')}: {preview_names(items, quote=False)}")
    if problems:
        raise MagicBokehError(
            "the weights do not match the config (" + "; ".join(problems) + "). Pass the matching config with --config."
        )


# ---------------------------------------------------------------------------------------------
# One-time conversion cache
# ---------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$MAGICBOKEH_CACHE_DIR/depth`` or ``~/.cache/magicbokeh/depth`` (XDG_CACHE_HOME honoured)."""
    return cache_dir("depth", may_disable=False)


def converted_folder(src: str | os.PathLike, *, config: str | os.PathLike | None = None) -> Path:
    """A transformers folder for an upstream ``.pth`` (or ``dadepth``), converted once and cached.

    The cache key is the file's identity (resolved path, size, mtime; Hub blobs are named by content)
    and the config, so a replaced file is converted again. Later calls read no pickle.
    """
    from ..diffusion.sources import fingerprint

    pth = resolve_checkpoint_file(os.fspath(src))
    cfg_text = load_config(config).to_json_string() if config is not None else json.dumps(VITL_CONFIG, sort_keys=True)
    payload = {"format": CONVERSION_FORMAT, "source": fingerprint([pth]), "config": cfg_text}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
    folder = cache_root() / f"{pth.stem}-{key}"
    if (folder / _COMPLETE_MARKER).is_file():
        return folder
    convert_dadepth(pth, folder, config=config)
    publish_text(folder / _COMPLETE_MARKER, json.dumps({"source": str(pth), "format": CONVERSION_FORMAT}) + "\n")
    return folder
