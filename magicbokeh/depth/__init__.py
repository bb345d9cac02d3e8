"""Depth: where a photo's disparity comes from.

Every source returns normalised disparity, (H, W) float32 in [0, 1] with 1 = nearest, at the
photo's size. The package's rooms:

* :mod:`.sources` — model names and the one resolver from a name or spec to a source;
* :mod:`.depth_anything` — the official Depth Anything V2 inference path (every model runs it);
* :mod:`.convert_dadepth` — the official ``DAdepth.pth`` converted to a transformers folder;
* :mod:`.estimators` — a model loaded once per process, and the per-photo disparity cache;
* :mod:`.approximate` — the weight-free stand-in;
* :mod:`.embedded` — depth recorded by phones (HEIC/JPEG auxiliary images).

This file only re-exports the public names; import the submodules for the rest.
"""

from __future__ import annotations

from .approximate import APPROXIMATE_LABEL, approximate_disparity
from .depth_anything import DEFAULT_INPUT_SIZE
from .estimators import (
    DEPTH_CACHE,
    DepthAnythingEstimator,
    DepthCache,
    DepthResult,
    depth_status,
    get_estimator,
)
from .sources import (
    DEFAULT_DEPTH_MODEL,
    DEPTH_MODEL_ENV,
    DEPTH_MODEL_LICENCES,
    DEPTH_MODELS,
    DepthModel,
    choose_depth_model,
    describe_source,
)

__all__ = [
    "APPROXIMATE_LABEL",
    "DEFAULT_DEPTH_MODEL",
    "DEFAULT_INPUT_SIZE",
    "DEPTH_CACHE",
    "DEPTH_MODELS",
    "DEPTH_MODEL_ENV",
    "DEPTH_MODEL_LICENCES",
    "DepthAnythingEstimator",
    "DepthCache",
    "DepthModel",
    "DepthResult",
    "approximate_disparity",
    "choose_depth_model",
    "depth_status",
    "describe_source",
    "get_estimator",
]
