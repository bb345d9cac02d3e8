"""The one Depth Anything V2 inference path, reproducing the official ``infer_image`` exactly.

Every Depth Anything model in the project (hub Small/Base/Large, DA depth, converted and user
folders) runs through :func:`predict_disparity`, used by the CLI, the app and the evaluation:

1. RGB in [0, 1] as float64, resized keeping the aspect ratio with the official lower-bound rule
   (each side >= ``input_size``, rounded to a multiple of 14) with OpenCV ``INTER_CUBIC``;
2. ImageNet normalisation;
3. the transformers model, with DINOv2's upstream position-embedding interpolation installed
   (:func:`apply_upstream_position_embeddings`);
4. bilinear (``align_corners=True``) resize of the prediction back to the photo's size.

The raw output is relative inverse depth (larger = nearer); callers min-max normalise it.
"""

from __future__ import annotations

import math
import os
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MagicBokehError
from .sources import DEPTH_MODELS, choose_depth_model, is_checkpoint_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Shorter-side target of the official code (``infer_image(raw, input_size=518)``).
DEFAULT_INPUT_SIZE = 518
PATCH_MULTIPLE = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: DINOv2's ``interpolate_offset``: added to the patch count before the scale factor is formed.
POS_EMBED_OFFSET = 0.1


def official_input_size(height: int, width: int, input_size: int = DEFAULT_INPUT_SIZE) -> tuple[int, int]:
    """(height, width) fed to the network for a photo, by the official lower-bound rule.

    The scale is the larger of ``input_size / height`` and ``input_size / width`` (so both sides end
    up at least ``input_size``); each side is rounded to a multiple of 14, and rounded up instead
    when rounding would fall below ``input_size``. E.g. 1024x1562 -> 518x784, 300x460 -> 518x798.
    """
    if input_size < PATCH_MULTIPLE or input_size % PATCH_MULTIPLE:
        raise MagicBokehError(f"depth input size {input_size} must be a positive multiple of {PATCH_MULTIPLE}.")
    scale = max(input_size / height, input_size / width)

    def snap(x: float) -> int:
        y = int(np.round(x / PATCH_MULTIPLE) * PATCH_MULTIPLE)
        if y < input_size:
            y = int(np.ceil(x / PATCH_MULTIPLE) * PATCH_MULTIPLE)
        return y

    return snap(scale * height), snap(scale * width)


def official_resize(rgb: np.ndarray, input_size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """The photo as the network sees it: (h, w, 3) float64 at :func:`official_input_size`, resized with
    OpenCV ``INTER_CUBIC`` in float64 like the official code (BGR uint8 / 255.0); not clipped, so the
    cubic overshoot stays. ``rgb``: (H, W, 3) uint8, or float (values used as given, [0, 1] for photos)."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise MagicBokehError(f"depth estimation needs an (H, W, 3) RGB image; got shape {rgb.shape}.")
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float64) / 255.0
    rgb = np.asarray(rgb, dtype=np.float64)
    h, w = official_input_size(rgb.shape[0], rgb.shape[1], input_size)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC)


def prepare_pixel_values(rgb: np.ndarray, input_size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """(1, 3, h, w) float32 network input for an (H, W, 3) RGB photo in [0, 1] (official rule)."""
    resized = official_resize(rgb, input_size)
    normalised = (resized - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Position embeddings
# ---------------------------------------------------------------------------------------------


def _upstream_interpolate_pos_encoding(self: Any, embeddings: "torch.Tensor", height: int, width: int) -> "torch.Tensor":
    import torch
    import torch.nn.functional as F

    num_patches = embeddings.shape[1] - 1
    num_positions = self.position_embeddings.shape[1] - 1
    if num_patches == num_positions and height == width:
        return self.position_embeddings
    target_dtype = self.position_embeddings.dtype
    pos = self.position_embeddings.float()
    class_pos, patch_pos = pos[:, :1], pos[:, 1:]
    dim = embeddings.shape[-1]
    side = int(math.sqrt(num_positions))
    patch_h, patch_w = height // self.patch_size, width // self.patch_size
    grid = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid,
        scale_factor=((patch_h + POS_EMBED_OFFSET) / side, (patch_w + POS_EMBED_OFFSET) / side),
        mode="bicubic",
        align_corners=False,
        antialias=False,
    )
    if tuple(grid.shape[-2:]) != (patch_h, patch_w):
        raise RuntimeError(f"position-embedding grid {tuple(grid.shape[-2:])} != patches {(patch_h, patch_w)}")
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((class_pos, patch_pos), dim=1).to(target_dtype)


def apply_upstream_position_embeddings(model: Any) -> Any:
    """Install DINOv2's upstream position-embedding interpolation on this model instance only.

    Why: transformers' Dinov2 resamples the 37x37 grid to an explicit ``size``; the official code
    (and so every published DA depth result) uses ``scale_factor = (patches + 0.1) / 37``, which
    samples at other positions: 6-8 % relative error on non-square inputs. We bind a method on the
    embeddings object of this instance, so installed packages and other models are untouched.
    Idempotent; returns ``model``.
    """
    embeddings = _find_embeddings(model)
    if getattr(embeddings, "_magicbokeh_upstream_pos", False):
        return model
    embeddings.interpolate_pos_encoding = types.MethodType(_upstream_interpolate_pos_encoding, embeddings)
    embeddings._magicbokeh_upstream_pos = True
    return model


def _find_embeddings(model: Any) -> Any:
    backbone = getattr(model, "backbone", model)
    embeddings = getattr(backbone, "embeddings", None)
    if embeddings is None or not hasattr(embeddings, "position_embeddings") or not hasattr(embeddings, "patch_size"):
        raise MagicBokehError(f"{type(model).__name__} has no DINOv2 embeddings; is it a Depth Anything model?")
    return embeddings


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


def predict_disparity(model: Any, rgb: np.ndarray, *, input_size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """Raw relative disparity (H, W) float32 at the photo's size (larger = nearer; not normalised).

    ``model`` is a transformers ``DepthAnythingForDepthEstimation`` with the upstream position
    embeddings installed; its device and dtype are used as they are.
    """
    import torch
    import torch.nn.functional as F

    h, w = np.asarray(rgb).shape[:2]
    param = next(model.parameters())
    pixels = torch.from_numpy(prepare_pixel_values(rgb, input_size)).to(param.device, param.dtype)
    with torch.inference_mode():
        depth = model(pixel_values=pixels).predicted_depth  # (1, h', w')
        depth = F.interpolate(depth[:, None].float(), (h, w), mode="bilinear", align_corners=True)[0, 0]
    return depth.cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Sources and loading
# ---------------------------------------------------------------------------------------------


def resolve_depth_source(spec: str) -> str:
    """The loadable form of a depth spec: a hub id or a local transformers folder.

    The spec is resolved by :func:`~magicbokeh.depth.sources.choose_depth_model` (names such as
    ``small`` become hub ids); ``dadepth`` and upstream ``.pth`` files (local or ``REPO/FILE.pth``
    on the Hub) are then converted once into the project cache
    (:func:`magicbokeh.depth.convert_dadepth.converted_folder`); a transformers folder or hub id is
    returned unchanged.
    """
    spec = choose_depth_model(os.fspath(spec))[0]
    if spec.startswith((".", "/", "~")) and not Path(spec).expanduser().exists():
        raise MagicBokehError(
            f"depth model {spec}: no such file or folder; pass a transformers folder (e.g. from "
            "`python -m magicbokeh convert-dadepth`), a Depth Anything V2 .pth, a hub id or a name "
            f"({', '.join(DEPTH_MODELS)})."
        )
    if is_checkpoint_file(spec):
        from .convert_dadepth import converted_folder

        return str(converted_folder(spec))
    return spec


def load_depth_model(
    spec: str, *, device: str = "cpu", dtype: "torch.dtype | None" = None, local_files_only: bool = False
) -> Any:
    """A Depth Anything V2 model in eval mode, on ``device``, with the upstream position embeddings.

    Args:
        spec: hub id, transformers folder, ``dadepth``, or an upstream ``.pth``.
        dtype: weights dtype (default float32).
    """
    import torch
    from transformers import AutoModelForDepthEstimation

    source = resolve_depth_source(spec)
    try:
        model = AutoModelForDepthEstimation.from_pretrained(
            source, local_files_only=local_files_only, dtype=dtype or torch.float32
        )
    except (OSError, ValueError) as exc:
        raise MagicBokehError(f"cannot load depth model {spec!r}: {exc}") from None
    apply_upstream_position_embeddings(model)
    return model.to(device).eval()
