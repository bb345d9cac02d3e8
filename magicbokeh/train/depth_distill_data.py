"""Data of the DA-depth distillation: clean crops and their degraded copies, in a resumable order.

By default (``field_of_view="inference"``) each photo is first resized as Depth Anything's inference
resizes it (short side = the crop, cubic), so teacher and student learn at the field of view they
see when a whole photo is rendered; ``"native"`` crops at the photo's own resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import MagicBokehError
from .depth_distill_config import DistillConfig


@dataclass(frozen=True)
class PresetDegradation:
    """Picklable ``(rgb, rng) -> rgb`` wrapper of :func:`magicbokeh.degradation.degrade`."""

    preset: str = "realesrgan"
    scale: float = 4.0

    def __call__(self, rgb: Any, rng: Any) -> Any:
        from ..degradation import degrade

        return degrade(rgb, preset=self.preset, scale=self.scale, seed=rng)


@dataclass
class DistillData:
    """The training set, its epoch sampler and loader, and the optional validation loader."""

    dataset: Any  # ImageFolderPairs
    sampler: Any  # EpochSampler
    loader: Any  # torch DataLoader (replaced by accelerate's prepared one)
    val_loader: Any | None

    def set_epoch(self, epoch: int) -> None:
        """The epoch seeds both the order and every sample's crop, flip and degradation. accelerate's
        ``set_epoch`` reaches only one of sampler and dataset, so all three are set explicitly."""
        self.loader.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)


def build_data(cfg: DistillConfig, num_processes: int) -> DistillData:
    """Datasets and loaders of ``cfg`` (random crops for training, centred crops for validation)."""
    import torch
    from torch.utils.data import DataLoader

    from .image_folder import EpochSampler, ImageFolderPairs

    degrade_fn = PresetDegradation(cfg.degradation, cfg.degradation_scale)
    dataset = ImageFolderPairs(cfg.images, crop=cfg.crop, degrade_fn=degrade_fn, seed=cfg.seed, train=True,
                               field_of_view=cfg.field_of_view)
    per_step = cfg.batch_size * num_processes
    if len(dataset) < per_step:
        raise MagicBokehError(
            f"{len(dataset)} readable images in {cfg.images} but one batch over {num_processes} "
            f"process(es) needs {per_step}; add images or lower --batch-size."
        )
    sampler = EpochSampler(len(dataset), seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                        num_workers=cfg.num_workers, drop_last=True, pin_memory=torch.cuda.is_available(),
                        persistent_workers=False)
    val_loader = None
    if cfg.val_images:
        val_set = ImageFolderPairs(cfg.val_images, crop=cfg.crop, degrade_fn=degrade_fn, seed=cfg.seed, train=False,
                                   field_of_view=cfg.field_of_view)
        val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    return DistillData(dataset, sampler, loader, val_loader)


__all__ = ["DistillData", "PresetDegradation", "build_data"]
