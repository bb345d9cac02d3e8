"""The synthetic-pair folder layout: one declaration for its writer, the trainer and the evaluator.

Written by ``magicbokeh.data.synth``, read by ``magicbokeh.train.magicbokeh_data`` (bokeh pairs)
and ``magicbokeh.eval.bokeh`` (scores). Layout under a dataset folder ``DIR`` (``ID`` is
:func:`sample_id` of the sample index)::

    DIR/aif/ID.png          all-in-focus composite (8-bit sRGB)
    DIR/disparity/ID.npy    visible disparity, float32 (H, W), 1 = near, min 0 and max 1 exactly
    DIR/bokeh/ID.png        thin-lens ground truth (8-bit sRGB)
    DIR/lq/ID.png           degraded all-in-focus input, same size
    DIR/layers/ID_L.png     complete RGBA layers, L = 0 farthest (8-bit, straight alpha)
    DIR/meta/ID.json        META_* keys below; written last, so its presence marks a complete sample
    DIR/manifest.jsonl      one meta row per sample plus its relative file paths, index order
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

AIF = "aif"
DISPARITY = "disparity"
BOKEH = "bokeh"
LQ = "lq"
LAYERS = "layers"
META = "meta"
#: Every sub-folder, in the order the generator creates them.
KINDS = (AIF, DISPARITY, BOKEH, LQ, LAYERS, META)
#: The sub-folders a training / evaluation pair uses.
PAIR_KINDS = (AIF, LQ, DISPARITY, BOKEH, META)
MANIFEST = "manifest.jsonl"

IMAGE_SUFFIX = ".png"
DISPARITY_SUFFIX = ".npy"
META_SUFFIX = ".json"
_SUFFIX = {AIF: IMAGE_SUFFIX, BOKEH: IMAGE_SUFFIX, LQ: IMAGE_SUFFIX, DISPARITY: DISPARITY_SUFFIX,
           META: META_SUFFIX}

# Meta keys (meta/ID.json).
META_ID = "id"
META_SEED = "seed"
META_INDEX = "index"
META_SIZE = "size"
#: Blur strength in [0, 32]: CoC radius ``K * |d - f|`` pixels.
META_K = "K"
#: Focal-plane disparity in the units of ``disparity/ID.npy`` ([0, 1]).
META_FOCUS = "focus_disparity"
META_LAYER_DISPARITIES = "layer_disparities"
META_SOURCES = "sources"
META_DEGRADATION = "degradation"


def sample_id(index: int) -> str:
    """The file stem of sample ``index`` (>= 0): six digits, zero-padded."""
    return f"{int(index):06d}"


def relative_path(kind: str, sid: str) -> str:
    """``KIND/ID.SUFFIX`` of one file of sample ``sid`` (``kind`` in aif, lq, bokeh, disparity, meta)."""
    return f"{kind}/{sid}{_SUFFIX[kind]}"


def layer_path(sid: str, layer: int) -> str:
    """``layers/ID_L.png``: the relative path of layer ``layer`` (0 = farthest)."""
    return f"{LAYERS}/{sid}_{int(layer)}{IMAGE_SUFFIX}"


def file_path(root: str | Path, kind: str, sid: str) -> Path:
    """The absolute path of one file of sample ``sid`` under the dataset folder ``root``."""
    return Path(root) / relative_path(kind, sid)


def sample_paths(index: int, num_layers: int) -> dict[str, Any]:
    """The relative paths of sample ``index`` as the manifest records them (layers as a list)."""
    sid = sample_id(index)
    rows: dict[str, Any] = {kind: relative_path(kind, sid) for kind in (AIF, BOKEH, LQ, DISPARITY)}
    rows[LAYERS] = [layer_path(sid, i) for i in range(num_layers)]
    rows[META] = relative_path(META, sid)
    return rows


def is_synthetic_layout(root: str | Path) -> bool:
    """True when ``root`` looks like this layout (it has ``bokeh/`` and ``meta/`` sub-folders)."""
    root = Path(root)
    return (root / BOKEH).is_dir() and (root / META).is_dir()


def blur_condition(meta: Mapping[str, Any]) -> tuple[float, float]:
    """``(K, focus_disparity)`` of a meta record as floats.

    Raises ``KeyError`` (a key is missing), ``TypeError`` or ``ValueError`` (not a number); callers
    turn these into their own messages.
    """
    return float(meta[META_K]), float(meta[META_FOCUS])


__all__ = [
    "AIF", "BOKEH", "DISPARITY", "DISPARITY_SUFFIX", "IMAGE_SUFFIX", "KINDS", "LAYERS", "LQ", "MANIFEST",
    "META", "META_DEGRADATION", "META_FOCUS", "META_ID", "META_INDEX", "META_K", "META_LAYER_DISPARITIES",
    "META_SEED", "META_SIZE", "META_SOURCES", "META_SUFFIX", "PAIR_KINDS", "blur_condition", "file_path",
    "is_synthetic_layout", "layer_path", "relative_path", "sample_id", "sample_paths",
]
