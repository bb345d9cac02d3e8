"""The official salient-object mask: LDF ``model-40`` loaded safely, run as ``prepare_data.py`` does.

Where the weights come from: ``model-40`` (LDF trained on DUTS) is linked from the README of the LDF
repository (github.com/weijun-arc/LDF, Wei et al., CVPR 2020) and sits on the authors' drive, not on
the Hugging Face hub, so it is configured by path (``--saliency-model PATH`` or
``MAGICBOKEH_SALIENCY_MODEL``). It is a complete state dict (backbone included), so the separate
ResNet-50 ImageNet file is not needed.

Loading never executes code from the file: the ``.pth`` is read once with
``torch.load(weights_only=True)`` (a pickle naming any class or function is refused), checked key by
key against :class:`~magicbokeh.subject.ldf_net.LDF`, cast to float32 and published as a safetensors
file in the project cache; later starts read only that file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..cache import cache_dir
from ..errors import MagicBokehError, preview_names
from ..state_dicts import read_state_dict

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .ldf_net import LDF

logger = logging.getLogger(__name__)

ENV_SALIENCY_MODEL = "MAGICBOKEH_SALIENCY_MODEL"
#: Bump when the cached layout changes, so stale cache entries are not reused.
CACHE_FORMAT = 1
INPUT_SIZE = 352
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHTS_SOURCE = (
    "LDF model-40 (DUTS-trained), linked from the README of github.com/weijun-arc/LDF (the authors' "
    "drive; not on the Hugging Face hub). The ResNet-50 ImageNet file is not needed: model-40 holds "
    "every tensor."
)
LICENCE_TEXT = (
    "LDF salient-object network (Wei et al., CVPR 2020): architecture re-implemented in magicbokeh. "
    "Weights: model-40 from the LDF repository, which states no licence for them; treat them as "
    "research-only unless the authors say otherwise."
)


def resolve_saliency_model(path: str | os.PathLike | None = None) -> Path | None:
    """The configured LDF weights: ``path``, else ``$MAGICBOKEH_SALIENCY_MODEL``, else None.

    Raises:
        MagicBokehError: a configured path that is not a file (says where the weights come from).
    """
    raw = os.fspath(path) if path is not None else os.environ.get(ENV_SALIENCY_MODEL, "")
    raw = raw.strip()
    if not raw:
        return None
    p = Path(raw).expanduser()
    if not p.is_file():
        origin = "--saliency-model" if path is not None else ENV_SALIENCY_MODEL
        raise MagicBokehError(
            f"saliency model {raw!r} ({origin}) is not a file. Download {WEIGHTS_SOURCE}"
        )
    return p


def saliency_status(path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(usable, one line for the app/licence panel) about the configured LDF weights; never raises."""
    try:
        found = resolve_saliency_model(path)
    except MagicBokehError as exc:
        return False, str(exc)
    if found is None:
        return False, ("automatic focus uses the nearest-large-region heuristic: no saliency model configured "
                       f"(--saliency-model or {ENV_SALIENCY_MODEL}). Weights: {WEIGHTS_SOURCE}")
    return True, f"official salient-object focus with LDF weights {found}."


def cache_root() -> Path:
    """``$MAGICBOKEH_CACHE_DIR/saliency`` or ``~/.cache/magicbokeh/saliency`` (XDG_CACHE_HOME honoured)."""
    return cache_dir("saliency", may_disable=False)


# ---------------------------------------------------------------------------------------------
# Reading and checking a checkpoint
# ---------------------------------------------------------------------------------------------


def read_ldf_checkpoint(path: str | os.PathLike) -> dict[str, "torch.Tensor"]:
    """The LDF state dict of a ``.pth`` (plain, or under ``model``/``state_dict``; ``module.`` stripped).

    Reads with ``torch.load(weights_only=True)``: tensors and plain containers only.

    Raises:
        MagicBokehError: missing or truncated file, or a pickle that names code (the name is given).
    """
    return read_state_dict(path, what="saliency checkpoint", hint="The LDF checkpoint must be a plain state dict.")


def check_state_dict(state: Mapping[str, "torch.Tensor"], expected: Mapping[str, tuple]) -> dict[str, "torch.Tensor"]:
    """Match ``state`` to the network's keys and shapes; floats cast to float32 (apex O2 saved fp16).

    Raises:
        MagicBokehError: naming missing, unexpected and mis-shaped tensors.
    """
    import torch

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k])})"
                   for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k]))
    problems = [f"{len(v)} {what}: {preview_names(v, quote=False)}"
                for what, v in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)) if v]
    if problems:
        raise MagicBokehError(
            "this is not the LDF model-40 checkpoint (" + "; ".join(problems) + f"). Use {WEIGHTS_SOURCE}"
        )
    return {k: (v.to(torch.float32) if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def expected_shapes() -> dict[str, tuple]:
    """Key -> shape of the network's state dict (built on the meta device: no memory)."""
    import torch

    from .ldf_net import LDF

    with torch.device("meta"):
        net = LDF()
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# One-time conversion to safetensors
# ---------------------------------------------------------------------------------------------


def converted_weights(path: str | os.PathLike) -> Path:
    """A safetensors copy of an LDF ``.pth`` in the cache, written once (atomically); safetensors
    input is returned as is. The key is the file's identity (resolved path, size, mtime)."""
    from safetensors.torch import save_file

    from ..diffusion.sources import fingerprint
    from ..publish import publish_file

    src = Path(path).expanduser()
    if src.suffix == ".safetensors":
        return src
    if not src.is_file():
        raise MagicBokehError(f"saliency checkpoint {src} not found.")
    payload = {"format": CACHE_FORMAT, "source": fingerprint([src])}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
    out = cache_root() / f"ldf-{src.stem}-{key}.safetensors"
    if out.is_file():
        return out
    state = check_state_dict(read_ldf_checkpoint(src), expected_shapes())
    out.parent.mkdir(parents=True, exist_ok=True)
    with publish_file(out) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "source": src.name})
    logger.info("converted %s -> %s (%d tensors)", src, out, len(state))
    return out


_MODELS: dict[str, "LDF"] = {}
_LOCK = threading.Lock()


def load_ldf(path: str | os.PathLike) -> "LDF":
    """The LDF network in eval mode on the CPU with weights from ``path`` (.pth or .safetensors).

    Converted once to safetensors (see :func:`converted_weights`); kept in memory per file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .ldf_net import LDF

    weights = converted_weights(path)
    key = str(weights.resolve())
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as exc:
            raise MagicBokehError(f"cannot read {weights}: {exc}") from None
        state = check_state_dict(state, expected_shapes())
        net = LDF()
        net.load_state_dict(state, strict=True)
        net.eval()
        _MODELS[key] = net
        return net


# ---------------------------------------------------------------------------------------------
# prepare_data.py's preprocessing and output
# ---------------------------------------------------------------------------------------------


def as_uint8_rgb(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 from a uint8 array, a float [0, 1] array (rounded) or a PIL image."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise MagicBokehError(f"expected an RGB image (H, W, 3); got shape {arr.shape}.")
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def preprocess(rgb: np.ndarray) -> "torch.Tensor":
    """1x3x352x352 float32: PIL bilinear resize to 352x352, /255, ImageNet mean/std (as torchvision)."""
    import torch
    from PIL import Image

    small = Image.fromarray(as_uint8_rgb(rgb)).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return x.sub(mean).div(std).unsqueeze(0)


def saliency_logits(net: "LDF", rgb: np.ndarray, size: tuple[int, int] | None = None) -> "torch.Tensor":
    """The fused2 logits, (H, W) float32, at ``size`` = (H, W) (default the photo's own size)."""
    import torch

    size = tuple(size) if size is not None else as_uint8_rgb(rgb).shape[:2]
    with torch.inference_mode():
        return net.fused2(preprocess(rgb), size)[0, 0]


def saliency_mask(net: "LDF", rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The official 8-bit salient mask, (H, W) uint8: ``round(sigmoid(fused2) * 255)``.

    ``size`` = (H, W) of the mask (default the photo's): the network's output is resized to it
    before the sigmoid, as the official ``model(image, (H, W))``.
    """
    import torch

    prob = torch.sigmoid(saliency_logits(net, rgb, size)) * 255.0
    return torch.round(prob).to(torch.uint8).numpy()
