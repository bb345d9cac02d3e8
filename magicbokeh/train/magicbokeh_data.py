"""Training data for MagicBokeh: SR pairs and bokeh pairs, addressed by a global draw index.

* SR pairs: a folder of clean photos (``image_folder.ImageFolderPairs``), random crop + flip, degraded
  on the fly with ``magicbokeh.degradation.degrade`` (a fresh seed per sample). With
  ``sharpen_target`` (the default, Real-ESRGAN x4plus's ``gt_usm: True``) the crop is unsharp-masked
  first: the sharpened crop is the target and the image that is degraded.
* Bokeh pairs: a folder in the synthetic layout (``magicbokeh.data.layout``): the input is
  ``aif/ID.png`` degraded on the fly with a fresh seed per draw (``bokeh_input="degrade"``, the
  default, as the SR stream), or the fixed ``lq/ID.png`` copy (``"lq"``, one degradation per pair
  for ever; exactly reproducible across runs and degradation code versions); the target is
  ``bokeh/ID.png``, with ``disparity/ID.npy`` and K and focus from ``meta/ID.json``.

  A random crop and flip are applied identically to input, disparity and target; the model condition
  (defocus map and in-focus mask) is ``magicbokeh.focus.model_condition``, as at inference.

Every sample is a function of ``(seed, stream, draw)`` only: draw ``n`` of a stream is item
``permutation(epoch)[n % len]`` of epoch ``n // len`` with a per-sample generator. Which draws a step
reads depends only on the step, so a resumed run sees exactly the samples of an uninterrupted one,
whatever the number of loader workers.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import MagicBokehError
from ..publish import publish_text
from ..data import layout
from ..focus import model_condition
from .image_folder import EpochSampler, ImageFolderPairs, read_rgb_uint8, sample_rng

logger = logging.getLogger(__name__)

#: Stream ids mixed into the seeds, so SR and bokeh draws are independent.
STREAM_IDS = {"sr": 101, "bokeh": 202}
BOKEH_SUBDIRS = layout.PAIR_KINDS


class Degrader:
    """``(rgb, rng) -> rgb`` around ``magicbokeh.degradation.degrade``; picklable for loader workers."""

    def __init__(self, preset: str, scale: float):
        from ..degradation import PRESETS

        if preset not in PRESETS:
            raise MagicBokehError(f"data.degradation_preset={preset!r}; use one of {', '.join(PRESETS)}.")
        self.preset, self.scale = preset, float(scale)

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from ..degradation import degrade

        return degrade(rgb, preset=self.preset, scale=self.scale, seed=rng)


def make_degrade_fn(preset: str, scale: float) -> Degrader:
    """The on-the-fly degradation of the SR (and ``bokeh_input=degrade``) inputs."""
    return Degrader(preset, scale)


class BokehPairs:
    """Bokeh training pairs from a folder in the synthetic layout (see the module docstring).

    Args:
        root: the folder.
        resolution: crop side in pixels (images with a shorter side are scaled up first).
        bokeh_input: ``"degrade"`` (degrade ``DIR/aif`` afresh on every draw) or ``"lq"`` (read the
            fixed ``DIR/lq`` copy).
        degrade_fn: used for ``"degrade"``.
        quantize: 8-bit truncate disparity and focus, as the backend does by default.
        seed: base seed; train: random crop/flip (else centred, no flip, fixed degradation).
    """

    def __init__(self, root: str | Path, *, resolution: int, bokeh_input: str = "degrade",
                 degrade_fn: Callable | None = None, quantize: bool = True, seed: int = 0, train: bool = True):
        self.root = Path(root)
        if not (self.root / layout.BOKEH).is_dir():
            raise MagicBokehError(
                f"bokeh folder {self.root} has no {layout.BOKEH}/ subfolder; expected {', '.join(BOKEH_SUBDIRS)} "
                "(generate one with magicbokeh.data.synth or set data.generate=N)."
            )
        source = layout.LQ if bokeh_input == "lq" else layout.AIF
        ids = sorted(p.stem for p in (self.root / layout.BOKEH).glob(f"*{layout.IMAGE_SUFFIX}"))
        needed = (source, layout.DISPARITY, layout.META)
        complete = [i for i in ids if all(layout.file_path(self.root, kind, i).is_file() for kind in needed)]
        if not complete:
            raise MagicBokehError(
                f"no complete bokeh pairs in {self.root} (each ID needs "
                f"{', '.join(layout.relative_path(kind, 'ID') for kind in (layout.BOKEH, *needed))})"
                + ("; the folder has no lq/ images: set data.bokeh_input=degrade"
                   if source == layout.LQ and not (self.root / layout.LQ).is_dir() else "")
                + ("; the folder has no aif/ images: set data.bokeh_input=lq"
                   if source == layout.AIF and not (self.root / layout.AIF).is_dir() else "")
                + "."
            )
        if len(complete) < len(ids):
            logger.warning("%s: %d of %d pairs are incomplete and skipped", self.root, len(ids) - len(complete), len(ids))
        self.ids = complete
        self.source = source
        self.resolution = int(resolution)
        self.degrade_fn = degrade_fn
        self.quantize = quantize
        self.seed = int(seed)
        self.train = train

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, index: int, epoch: int) -> dict[str, Any]:
        import cv2
        import torch

        sid = self.ids[index]
        inp = read_rgb_uint8(layout.file_path(self.root, self.source, sid))
        target = read_rgb_uint8(layout.file_path(self.root, layout.BOKEH, sid))
        disp = np.load(layout.file_path(self.root, layout.DISPARITY, sid), allow_pickle=False).astype(np.float32)
        meta_path = layout.file_path(self.root, layout.META, sid)
        try:
            k, focus = layout.blur_condition(json.loads(meta_path.read_text()))
        except (KeyError, TypeError, ValueError):
            raise MagicBokehError(
                f"{meta_path} needs numeric {layout.META_K} and {layout.META_FOCUS}.") from None
        if inp.shape != target.shape or disp.shape != inp.shape[:2]:
            raise MagicBokehError(
                f"pair {sid} in {self.root}: input {inp.shape[:2]}, target {target.shape[:2]} and disparity "
                f"{disp.shape} must have the same size."
            )
        rng = sample_rng(self.seed + STREAM_IDS["bokeh"], epoch if self.train else -1, index)
        # one crop for all three: stack as channels (disparity resized nearest when scaling up)
        r = self.resolution
        h, w = disp.shape
        if min(h, w) < r:
            scale = r / min(h, w)
            size = (max(r, round(w * scale)), max(r, round(h * scale)))
            inp = cv2.resize(inp, size, interpolation=cv2.INTER_CUBIC)
            target = cv2.resize(target, size, interpolation=cv2.INTER_CUBIC)
            disp = cv2.resize(disp, size, interpolation=cv2.INTER_NEAREST)
            h, w = disp.shape
        if self.train:
            top, left = int(rng.integers(0, h - r + 1)), int(rng.integers(0, w - r + 1))
            flip = bool(rng.random() < 0.5)
        else:
            top, left, flip = (h - r) // 2, (w - r) // 2, False
        crop = (slice(top, top + r), slice(left, left + r))
        inp, target, disp = inp[crop], target[crop], disp[crop]
        if flip:
            inp, target, disp = inp[:, ::-1], target[:, ::-1], disp[:, ::-1]
        inp_f = np.ascontiguousarray(inp, np.float32) / np.float32(255.0)
        if self.source == layout.AIF:
            if self.degrade_fn is None:
                raise MagicBokehError("data.bokeh_input=degrade needs a degradation function.")
            inp_f = np.asarray(self.degrade_fn(inp_f, rng), np.float32)
        defocus, in_focus, _ = model_condition(np.ascontiguousarray(disp), focus, k, quantize=self.quantize)
        return {
            "input": torch.from_numpy(np.ascontiguousarray(inp_f.transpose(2, 0, 1))),
            "target": torch.from_numpy(np.ascontiguousarray(target.transpose(2, 0, 1), np.float32) / 255.0),
            "defocus": torch.from_numpy(np.ascontiguousarray(defocus)[None]),
            "in_focus": torch.from_numpy(np.ascontiguousarray(in_focus)),
            "k": torch.tensor(k, dtype=torch.float32),
        }


class SRPairs:
    """SR pairs (clean target, degraded input) from ``ImageFolderPairs``, in the bokeh item layout
    (all-zero defocus map, everything in focus)."""

    def __init__(self, root: str | Path, *, resolution: int, degrade_fn: Callable, seed: int = 0, train: bool = True,
                 sharpen_target: bool = True):
        self.pairs = ImageFolderPairs(root, crop=resolution, degrade_fn=degrade_fn,
                                      seed=seed + STREAM_IDS["sr"], train=train, sharpen_target=sharpen_target)
        self.resolution = int(resolution)

    def __len__(self) -> int:
        return len(self.pairs)

    def item(self, index: int, epoch: int) -> dict[str, Any]:
        import torch

        self.pairs.set_epoch(epoch)  # per-process state, set right before the read
        sample = self.pairs[index]
        r = self.resolution
        return {
            "input": sample["degraded"],
            "target": sample["clean"],
            "defocus": torch.zeros(1, r, r),
            "in_focus": torch.ones(r, r, dtype=torch.bool),
            "k": torch.tensor(0.0),
        }


class DrawDataset:
    """Map-style dataset over draw indices: draw ``n`` → item ``perm(n // len)[n % len]``."""

    def __init__(self, source: BokehPairs | SRPairs, *, seed: int, stream: str):
        self.source = source
        self.sampler = EpochSampler(len(source), seed=seed + STREAM_IDS[stream], shuffle=True)
        self._perm: tuple[int, list[int]] | None = None

    def index_of(self, draw: int) -> tuple[int, int]:
        n = len(self.source)
        epoch, pos = divmod(int(draw), n)
        if self._perm is None or self._perm[0] != epoch:
            self.sampler.set_epoch(epoch)
            self._perm = (epoch, list(iter(self.sampler)))
        return self._perm[1][pos], epoch

    def __len__(self) -> int:  # the stream is endless; torch only needs a length for some samplers
        return 2**62

    def __getitem__(self, draw: int) -> dict[str, Any]:
        index, epoch = self.index_of(draw)
        return self.source.item(index, epoch)


class DrawSampler:
    """Endless draw indices for one process: step ``c`` of a stream (counted from ``start``),
    micro-batch ``m``, sample ``b`` → ``((c·A + m)·W + rank)·B + b``."""

    def __init__(self, start: int, *, batch: int, accumulation: int, rank: int, world: int):
        self.start, self.batch, self.acc, self.rank, self.world = start, batch, accumulation, rank, world

    def __iter__(self) -> Iterator[int]:
        for c in itertools.count(self.start):
            for m in range(self.acc):
                base = ((c * self.acc + m) * self.world + self.rank) * self.batch
                yield from range(base, base + self.batch)


def stream_loader(dataset: DrawDataset, start: int, *, batch: int, accumulation: int, rank: int, world: int,
                  workers: int) -> Iterator[dict[str, Any]]:
    """An endless iterator of batches starting at the stream's step ``start``."""
    from torch.utils.data import DataLoader

    sampler = DrawSampler(start, batch=batch, accumulation=accumulation, rank=rank, world=world)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        persistent_workers=workers > 0, drop_last=False)
    return iter(loader)


def generate_synthetic(out_dir: Path, num: int, seed: int, size: int) -> Path:
    """Synthetic bokeh pairs (``magicbokeh.data.synth``, procedural mode) in ``out_dir``, once."""
    marker = out_dir / "COMPLETE"
    if marker.is_file() and json.loads(marker.read_text()).get("num") == num:
        return out_dir
    try:
        from ..data.synth import generate
    except ImportError as exc:
        raise MagicBokehError(
            f"cannot generate training data: magicbokeh.data.synth is unavailable ({exc}); pass "
            "data.sr_dir and data.bokeh_dir instead."
        ) from exc
    logger.info("generating %d synthetic bokeh pairs (%d px) in %s", num, size, out_dir)
    generate(out_dir, num, seed, size=size, workers=1, progress=False)
    publish_text(marker, json.dumps({"num": num, "seed": seed, "size": size}) + "\n")
    return out_dir


__all__ = [
    "BOKEH_SUBDIRS",
    "BokehPairs",
    "Degrader",
    "DrawDataset",
    "DrawSampler",
    "SRPairs",
    "STREAM_IDS",
    "generate_synthetic",
    "make_degrade_fn",
    "stream_loader",
]
