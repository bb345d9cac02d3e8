"""Depth-model names and the one resolver from a name or spec to a model source.

A *spec* is what a user types (``--depth-model``, the app's menu, ``get_estimator``): a name in
:data:`DEPTH_MODELS`, a hub id, a transformers folder, an upstream ``.pth`` (local or
``REPO/FILE.pth`` on the Hub), or ``None``/``"auto"``. :func:`choose_depth_model` turns it into a
*source* (what the loader reads) and says why. Nothing here imports torch or loads weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import hub

DEPTH_MODEL_ENV = "MAGICBOKEH_DEPTH_MODEL"
#: Where the official DA depth checkpoint lives on the Hub.
DADEPTH_REPO = "LinxiaoShi/Magicbokeh"
DADEPTH_FILENAME = "DAdepth.pth"


@dataclass(frozen=True)
class DepthModel:
    """A named depth model: ``source`` is what :func:`magicbokeh.depth.get_estimator` loads."""

    name: str
    source: str
    label: str
    licence: str


#: The depth models offered by name (CLI ``--depth-model NAME``, the app's selector).
DEPTH_MODELS: dict[str, DepthModel] = {
    "dadepth": DepthModel(
        "dadepth", "dadepth", "DA depth (MagicBokeh, degradation-aware ViT-L)",
        "derived from Depth Anything V2 Large (CC-BY-NC-4.0); its own terms are unstated",
    ),
    "small": DepthModel("small", "depth-anything/Depth-Anything-V2-Small-hf", "Depth Anything V2 Small", "Apache-2.0"),
    "base": DepthModel("base", "depth-anything/Depth-Anything-V2-Base-hf", "Depth Anything V2 Base", "CC-BY-NC-4.0"),
    "large": DepthModel("large", "depth-anything/Depth-Anything-V2-Large-hf", "Depth Anything V2 Large", "CC-BY-NC-4.0"),
}
#: Apache-2.0, so usable in any demo; DA depth is preferred on a GPU when its weights are present.
DEFAULT_DEPTH_MODEL = DEPTH_MODELS["small"].source
DEPTH_MODEL_LICENCES = {m.source: m.licence for m in DEPTH_MODELS.values()}


def is_checkpoint_file(spec: str) -> bool:
    """True for an upstream ``.pth``/``.pt`` checkpoint (a local file, or a Hub ``REPO/FILE.pth``)."""
    return spec == "dadepth" or Path(spec).suffix.lower() in (".pth", ".pt")


def checkpoint_hub_file(spec: str) -> tuple[str, str]:
    """(repo, filename) of a Hub checkpoint spec: ``dadepth`` or ``REPO[/FILE.pth]``."""
    if spec == "dadepth":
        return DADEPTH_REPO, DADEPTH_FILENAME
    parts = spec.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _cuda_available(device: str | None = None) -> bool:
    if (device or os.environ.get("MAGICBOKEH_DEVICE") or "auto").startswith("cpu"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _dadepth_weights_present() -> bool:
    return hub.cached_file(DADEPTH_REPO, DADEPTH_FILENAME) is not None


def _named_source(spec: str) -> str:
    if spec in DEPTH_MODELS and not os.path.exists(spec):
        return DEPTH_MODELS[spec].source
    return spec


def choose_depth_model(spec: str | None = None, *, configured: str | None = None,
                       device: str | None = None) -> tuple[str, str]:
    """(model source, why) for a depth spec: the one resolver from names to sources.

    Order: the argument, then ``configured`` (a front end's ``--depth-model``), then
    ``MAGICBOKEH_DEPTH_MODEL``, then automatic (``None``/``"auto"``; ``device`` is where the model
    would run, None = ``$MAGICBOKEH_DEVICE``, else auto): on
    a GPU DA depth when its weights are already present (the paper's pairing for low-quality
    photos), otherwise Depth Anything V2 Small (Apache-2.0; ViT-L is several times slower on a
    CPU). A name becomes its source unless a file or folder of that name exists (the path wins);
    any other spec is returned unchanged.
    """
    if spec and spec != "auto":
        return _named_source(spec), "chosen"
    if configured and configured != "auto":
        return _named_source(configured), "from --depth-model"
    if os.environ.get(DEPTH_MODEL_ENV):
        return _named_source(os.environ[DEPTH_MODEL_ENV]), f"from ${DEPTH_MODEL_ENV}"
    # Weights first: the device check imports torch, which an app start should not pay for.
    if not _dadepth_weights_present():
        return DEFAULT_DEPTH_MODEL, "automatic: DA depth is used on a GPU once its weights are downloaded"
    if _cuda_available(device):
        return DEPTH_MODELS["dadepth"].source, "automatic: GPU and DA depth weights present"
    return DEFAULT_DEPTH_MODEL, "automatic: CPU (DA depth, a ViT-L, is several times slower here)"


def describe_source(source: str) -> str:
    """A readable label for a depth model source (its name in :data:`DEPTH_MODELS` when known)."""
    for model in DEPTH_MODELS.values():
        if model.source == source:
            where = source if model.name != "dadepth" else f"{DADEPTH_REPO} {DADEPTH_FILENAME}"
            return f"{model.label} ({where})"
    return f"Depth Anything V2 ({source})"
