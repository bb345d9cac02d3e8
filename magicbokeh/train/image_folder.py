"""A folder of photos as a training dataset: random crop + flip, clean and degraded copies.

Any folder of photos works (searched recursively; ``.jpg .jpeg .png .webp .bmp``), e.g. a subset of
SA-1B as in the MagicBokeh paper. Each sample is a random square crop (the shorter side is first
resized up, bicubic, when it is smaller than the crop; with ``field_of_view="inference"`` the photo is
first resized as Depth Anything's inference resizes it, short side = crop), randomly flipped
left-right, returned twice:
the clean crop and a degraded copy made by a pluggable ``degrade_fn`` (for the trainers
``magicbokeh.degradation.degrade``).

Randomness is reproducible and independent of the number of data-loader workers and processes:
every sample draws from its own ``numpy`` generator seeded with ``(seed, epoch, index)``. Resuming
a run at batch ``k`` of an epoch therefore yields exactly the samples the uninterrupted run saw.

Unreadable files are found once when the dataset is built (a cheap header check with PIL's
``verify``), skipped with one warning and counted in :attr:`ImageFolderPairs.skipped`. A file that
passes the check but fails to decode later is replaced by the next readable index with a warning,
so a long run is never aborted by one bad photo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import MagicBokehError
from ..images import upright_pil

logger = logging.getLogger(__name__)

#: File name endings (case-insensitive) read from a training image folder.
TRAIN_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: Per-channel ImageNet statistics that Depth Anything V2 (DINOv2) expects, for RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``degrade_fn(rgb, rng) -> rgb``: (H, W, 3) float32 in [0, 1] in and out, same size.
DegradeFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: Where crops are taken: ``native`` resolution, or the photo resized as Depth Anything's inference
#: resizes it (short side = the crop, :func:`inference_view`), so a crop sees the field of view it will see.
FIELDS_OF_VIEW = ("native", "inference")
_VALIDATION_EPOCH = -1  # validation samples never depend on the epoch
_MAX_REPLACEMENTS = 16


def find_images(root: str | Path) -> list[Path]:
    """All photos under ``root`` (recursive), sorted by path so every process sees the same order."""
    root = Path(root)
    if not root.is_dir():
        raise MagicBokehError(f"image folder {root} does not exist; pass a folder of photos.")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in TRAIN_IMAGE_SUFFIXES and p.is_file())


def check_images(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split ``paths`` into (readable, unreadable) with a cheap header check (no full decode)."""
    good, bad = [], []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.verify()
            good.append(path)
        except Exception as exc:  # any decoder error means: skip this file
            logger.debug("unreadable image %s: %s", path, exc)
            bad.append(path)
    return good, bad


def read_rgb_uint8(path: str | Path) -> np.ndarray:
    """Decode a photo to upright (EXIF orientation applied) ``(H, W, 3)`` uint8 RGB."""
    with Image.open(path) as img:
        img.load()
        upright, _ = upright_pil(img)
        return np.asarray(upright.convert("RGB"), dtype=np.uint8)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in ``epoch`` (``epoch = -1``: validation)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) + 1, int(index)]))


def crop_square(rgb: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """A ``size`` x ``size`` crop of ``rgb`` (H, W, 3) uint8 or float: random with ``rng``, else centred.

    When the shorter side is below ``size`` the image is first resized up (bicubic, aspect kept) so
    that the shorter side equals ``size``.
    """
    import cv2

    h, w = rgb.shape[:2]
    if min(h, w) < size:
        scale = size / min(h, w)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
        h, w = rgb.shape[:2]
    if rng is None:
        top, left = (h - size) // 2, (w - size) // 2
    else:
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return rgb[top:top + size, left:left + size]


def inference_view(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` resized as Depth Anything's inference resizes a photo for input size ``size`` (a multiple
    of 14): short side = ``size``, the long side by the official lower-bound rule, cubic in float64
    (:func:`magicbokeh.depth.depth_anything.official_resize`). uint8 in: float32 in [0, 1] out (clipped:
    the degradation takes [0, 1]); float in: float32, values as resized."""
    from ..depth.depth_anything import official_resize

    out = official_resize(rgb, size)
    if np.asarray(rgb).dtype == np.uint8:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


class ImageFolderPairs:
    """Clean/degraded crop pairs from a folder of photos (a map-style torch dataset).

    Args:
        root: folder searched recursively for ``TRAIN_IMAGE_SUFFIXES`` files.
        crop: side of the square crops in pixels (> 0).
        degrade_fn: ``(rgb, rng) -> rgb`` on (H, W, 3) float32 in [0, 1]; None returns the clean crop
            as the degraded one too.
        seed: base seed of all the per-sample randomness.
        train: True: random crop and flip, new randomness every epoch; False (validation): centred
            crop, no flip, one fixed degradation per image.
        verify: check every file once at build time (cheap header read) and skip unreadable ones.
        field_of_view: ``"native"`` (crop the photo at its own resolution) or ``"inference"`` (crop the
            photo resized as Depth Anything's inference resizes it, :func:`inference_view`; ``crop``
            must then be a multiple of 14).
        sharpen_target: Real-ESRGAN's ``gt_usm``: the clean crop is unsharp-masked
            (:func:`magicbokeh.degradation.unsharp_mask`) and that sharpened crop is both the target
            and what ``degrade_fn`` degrades, as upstream degrades its sharpened ground truth.

    Each item is a dict: ``clean`` and ``degraded`` (3, crop, crop) float32 tensors in [0, 1] (RGB,
    not normalised) and ``index`` (int). :attr:`skipped` lists the files found unreadable.
    """

    def __init__(self, root: str | Path, *, crop: int = 518, degrade_fn: DegradeFn | None = None,
                 seed: int = 0, train: bool = True, verify: bool = True, sharpen_target: bool = False,
                 field_of_view: str = "native") -> None:
        if crop <= 0:
            raise MagicBokehError(f"crop={crop} must be a positive number of pixels.")
        if field_of_view not in FIELDS_OF_VIEW:
            raise MagicBokehError(f"field of view {field_of_view!r}: use one of {', '.join(FIELDS_OF_VIEW)}.")
        paths = find_images(root)
        self.skipped: list[Path] = []
        if verify:
            paths, self.skipped = check_images(paths)
            if self.skipped:
                shown = ", ".join(p.name for p in self.skipped[:5])
                logger.warning("skipping %d unreadable image(s) in %s: %s%s", len(self.skipped), root,
                               shown, " ..." if len(self.skipped) > 5 else "")
        if not paths:
            raise MagicBokehError(
                f"no readable images ({' '.join(TRAIN_IMAGE_SUFFIXES)}) in {root}; pass a folder of photos."
            )
        self.root = Path(root)
        self.paths = paths
        self.crop = int(crop)
        self.degrade_fn = degrade_fn
        self.seed = int(seed)
        self.train = bool(train)
        self.sharpen_target = bool(sharpen_target)
        self.field_of_view = field_of_view
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose randomness the next iteration uses (accelerate calls this)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        for attempt in range(_MAX_REPLACEMENTS):
            candidate = (int(index) + attempt) % len(self.paths)
            try:
                rgb = read_rgb_uint8(self.paths[candidate])
                break
            except Exception as exc:  # decode errors must not stop a long run
                logger.warning("cannot read %s (%s); using the next image instead", self.paths[candidate], exc)
        else:
            raise MagicBokehError(f"{_MAX_REPLACEMENTS} consecutive unreadable images from index {index} "
                                  f"in {self.root}; check the data folder.")
        rng = sample_rng(self.seed, self.epoch if self.train else _VALIDATION_EPOCH, int(index))
        if self.field_of_view == "inference":
            view = inference_view(rgb, self.crop)  # float32 in [0, 1], short side = crop
        else:
            view = rgb
        clean = crop_square(view, self.crop, rng if self.train else None)
        if self.train and rng.random() < 0.5:
            clean = clean[:, ::-1]
        if clean.dtype == np.uint8:
            clean = np.ascontiguousarray(clean, dtype=np.float32) / np.float32(255.0)
        else:
            clean = np.ascontiguousarray(clean, dtype=np.float32)
        if self.sharpen_target:
            from ..degradation import unsharp_mask

            clean = unsharp_mask(clean)
        if self.degrade_fn is None:
            degraded = clean
        else:
            degraded = np.asarray(self.degrade_fn(clean, rng), dtype=np.float32)
            if degraded.shape != clean.shape:
                raise MagicBokehError(
                    f"the degradation returned shape {degraded.shape} for a {clean.shape} crop; "
                    "it must keep the size."
                )
        return {
            "clean": torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1))),
            "degraded": torch.from_numpy(np.ascontiguousarray(np.clip(degraded, 0.0, 1.0).transpose(2, 0, 1))),
            "index": int(index),
        }


class EpochSampler:
    """Index order of one epoch: a permutation seeded by ``(seed, epoch)``, or in order.

    A plain sampler (no torch generator) so the order depends only on the seed and the epoch, which
    makes resuming exact; ``accelerate`` shards its batches across processes and calls
    :meth:`set_epoch`.
    """

    def __init__(self, length: int, *, seed: int = 0, shuffle: bool = True) -> None:
        self.length = int(length)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.length))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed & 0xFFFFFFFF, self.epoch, 0x5A17]))
        return iter(rng.permutation(self.length).tolist())


def normalise_imagenet(batch: Any) -> Any:
    """``(B, 3, H, W)`` RGB in [0, 1] → ImageNet-normalised tensor (same device and dtype)."""
    mean = batch.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = batch.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TRAIN_IMAGE_SUFFIXES",
    "FIELDS_OF_VIEW",
    "EpochSampler",
    "ImageFolderPairs",
    "check_images",
    "crop_square",
    "find_images",
    "inference_view",
    "normalise_imagenet",
    "read_rgb_uint8",
    "sample_rng",
]
