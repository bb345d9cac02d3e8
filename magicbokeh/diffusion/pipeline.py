"""Tiled one-step MagicBokeh rendering (spec §1.2, §1.6, §12).

``MagicBokehPipeline.render`` takes the photo, the defocus map ``|d − f|·K/32`` and the in-focus
mask (computed by ``magicbokeh.focus``) and runs, per batch of 512 px tiles:

1. VAE encode (merged LoRA), posterior *sample* with a per-tile seeded noise, × 0.18215; the
   latent is cached per (image, tile, seed), so changing K or the focus skips this step;
2. ControlNet on the defocus condition (×2 − 1, 3 channels) → 12 residuals;
3. UNet at t = 999 with the per-tile focus masks on the nine up-block self-attentions → ε̂;
4. ``x0 = (z − √(1−ᾱ)·ε̂)/√ᾱ``, VAE decode, clamp to [−1, 1];

then blends the tiles with the official linear ramps, maps to [0, 1] and applies the colour fix.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import MagicBokehError
from .color_fix import COLOR_FIXES, apply_color_fix
from .devices import empty_cache, is_out_of_memory
from .loading import MagicBokehModel
from .forward import decode_latents, defocus_condition, encode_latents, focus_mask, predict_x0
from .tiling import pad_to_tile, tile_positions, tile_weight

logger = logging.getLogger(__name__)

#: progress(fraction in [0, 1], stage text)
Progress = Callable[[float, str], None]
DEFAULT_SEED = 42
#: Images whose encoded latents are kept (per pipeline); each 512 tile costs 64 KiB.
LATENT_CACHE_IMAGES = 8


@dataclass
class RenderOutput:
    """Result of ``MagicBokehPipeline.render``.

    Attributes:
        image: ``(H, W, 3)`` float32 RGB in [0, 1].
        timings: seconds per stage (encode, denoise, decode, blend, color_fix, total).
        stats: tile count, batch size used, tiles encoded vs taken from the latent cache.
    """

    image: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)


def balanced_batch(n_tiles: int, max_batch: int) -> int:
    """Tiles per pass so that every pass has (nearly) the same size and none exceeds ``max_batch``.

    18 tiles with at most 8 per pass run as 6 + 6 + 6 instead of 8 + 8 + 2: no small tail pass
    with a new shape (on GPUs each new shape costs kernel selection) and the same number of passes.
    """
    if n_tiles <= 0:
        return max(1, max_batch)
    passes = math.ceil(n_tiles / max_batch)
    return math.ceil(n_tiles / passes)


def tile_seed(seed: int, top: int, left: int) -> int:
    """Seed of one tile's posterior noise: independent of batch composition and tile order."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, top, left]).generate_state(1, np.uint64)[0] >> 1)


def tile_noise(seed: int, top: int, left: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard-normal float32 CPU noise for one tile's latent (same on every device)."""
    gen = torch.Generator().manual_seed(tile_seed(seed, top, left))
    return torch.randn(shape, generator=gen, dtype=torch.float32)


class MagicBokehPipeline:
    """Tiled inference over a loaded ``MagicBokehModel``; holds the per-image latent cache.

    Thread-safe: renders on one pipeline are serialised (the networks are shared).
    """

    def __init__(self, model: MagicBokehModel, *, latent_cache_images: int = LATENT_CACHE_IMAGES):
        self.model = model
        self._latents: OrderedDict[tuple, dict[tuple[int, int], torch.Tensor]] = OrderedDict()
        self._cache_images = latent_cache_images
        self._lock = threading.Lock()
        self._max_batch: int | None = None  # lowered after an out-of-memory error

    # -- public ---------------------------------------------------------------------------------

    def default_tile_batch(self) -> int:
        """Most tiles per forward: 1 on CPU (no gain from batching), 8 on GPUs (~5.8 GiB in fp16)."""
        return 1 if self.model.device.type == "cpu" else 8

    @torch.inference_mode()
    def render(
        self,
        image: np.ndarray,
        defocus: np.ndarray,
        in_focus: np.ndarray,
        *,
        seed: int = DEFAULT_SEED,
        tile_batch: int | None = None,
        color_fix: str = "adain",
        image_key: str | None = None,
        progress: Progress | None = None,
    ) -> RenderOutput:
        """Render one photo.

        Args:
            image: ``(H, W, 3)`` float32 RGB in [0, 1].
            defocus: ``(H, W)`` float32 unitless defocus ``|d − f|·K/32`` in [0, 1].
            in_focus: ``(H, W)`` bool, True = in focus (``defocus <= 0.1``).
            seed: seed of the VAE posterior samples (deterministic per seed).
            tile_batch: most tiles per forward pass (default 1 on CPU, 8 on GPU), split into equal passes.
            color_fix: ``"adain"`` (official), ``"wavelet"`` or ``"none"``.
            image_key: content hash of ``image``; enables the latent cache.
            progress: ``progress(fraction, stage)`` after every batch of tiles, with an ETA.
        """
        h, w = self._check_inputs(image, defocus, in_focus, color_fix)
        with self._lock:
            return self._render(image, defocus, in_focus, h, w, seed, tile_batch, color_fix, image_key, progress)

    def clear_cache(self) -> None:
        """Drop all cached latents."""
        self._latents.clear()

    # -- steps ----------------------------------------------------------------------------------

    def _check_inputs(self, image, defocus, in_focus, color_fix) -> tuple[int, int]:
        if image.ndim != 3 or image.shape[2] != 3:
            raise MagicBokehError(f"the photo must be (H, W, 3) RGB; got shape {image.shape}.")
        h, w = image.shape[:2]
        for name, arr in (("defocus map", defocus), ("in-focus mask", in_focus)):
            if arr.shape != (h, w):
                raise MagicBokehError(f"the {name} is {arr.shape[1]}x{arr.shape[0]} but the photo is {w}x{h}.")
        if color_fix not in COLOR_FIXES:
            raise MagicBokehError(f"unknown colour fix {color_fix!r}; choose {', '.join(COLOR_FIXES)}.")
        if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
            raise MagicBokehError("the photo must be finite float RGB in [0, 1].")
        return h, w

    def _render(self, image, defocus, in_focus, h, w, seed, tile_batch, color_fix, image_key, progress):
        m = self.model
        t_start = time.perf_counter()
        timings = {"encode": 0.0, "denoise": 0.0, "decode": 0.0}
        tile = m.tile_size
        # 1. pad small photos (reflect) so every side holds a tile; cropped back at the end
        img_p = pad_to_tile(np.asarray(image, np.float32), tile)
        dfc_p = pad_to_tile(np.asarray(defocus, np.float32), tile)
        msk_p = pad_to_tile(np.asarray(in_focus, bool), tile)
        hp, wp = img_p.shape[:2]
        positions = tile_positions(hp, wp, tile)
        # 2. whole-image tensors on the device: image in [-1, 1], defocus in [0, 1]
        dev = m.device
        img_t = torch.from_numpy(np.ascontiguousarray(img_p.transpose(2, 0, 1))).to(dev) * 2 - 1
        dfc_t = torch.from_numpy(np.ascontiguousarray(dfc_p)).to(dev)[None]
        msk_t = torch.from_numpy(np.ascontiguousarray(msk_p)).to(dev)
        acc = torch.zeros(3, hp, wp, dtype=torch.float32, device=dev)
        wsum = torch.zeros(hp, wp, dtype=torch.float32, device=dev)
        cache = self._latent_store(image_key, seed, hp, wp)

        batch = max(1, int(tile_batch or self.default_tile_batch()))
        if self._max_batch is not None:
            batch = min(batch, self._max_batch)
        batch = balanced_batch(len(positions), batch)
        stats = {"tiles": len(positions), "encoded": 0, "cached": 0, "batch": batch}
        done, i = 0, 0
        while i < len(positions):
            chunk = positions[i : i + batch]
            try:
                out = self._run_tiles(chunk, img_t, dfc_t, msk_t, cache, seed, timings, stats)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                empty_cache(dev)
                if batch == 1:
                    raise MagicBokehError(
                        f"out of {dev.type} memory even with one {tile} px tile per pass; free GPU "
                        "memory, use --dtype fp16, or run with --device cpu."
                    ) from exc
                batch = max(1, batch // 2)
                self._max_batch = batch
                stats["batch"] = batch
                logger.warning("out of memory; retrying with %d tiles per pass", batch)
                continue
            t0 = time.perf_counter()
            for (top, left), tile_out in zip(chunk, out):
                wt = torch.from_numpy(tile_weight(top, left, hp, wp, tile)).to(dev)
                acc[:, top : top + tile, left : left + tile] += tile_out * wt
                wsum[top : top + tile, left : left + tile] += wt
            timings["blend"] = timings.get("blend", 0.0) + time.perf_counter() - t0
            i += len(chunk)
            done += len(chunk)
            if progress is not None:
                elapsed = time.perf_counter() - t_start
                eta = elapsed / done * (len(positions) - done)
                progress(done / len(positions), f"MagicBokeh tile {done}/{len(positions)}, ETA {_fmt_s(eta)}")

        # 3. blend, crop, [-1, 1] -> [0, 1], colour fix against the input photo
        t0 = time.perf_counter()
        out = (acc / wsum.clamp_min(1e-8))[:, :h, :w] * 0.5 + 0.5
        source = img_t[:, :h, :w] * 0.5 + 0.5
        out = apply_color_fix(color_fix, out, source)
        result = out.permute(1, 2, 0).float().cpu().numpy()
        timings["color_fix"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        return RenderOutput(np.ascontiguousarray(result, dtype=np.float32), timings, stats)

    def _run_tiles(self, chunk, img_t, dfc_t, msk_t, cache, seed, timings, stats) -> torch.Tensor:
        """Decoded ``(B, 3, T, T)`` float32 tiles in [−1, 1] for the tile positions in ``chunk``."""
        m = self.model
        tile = m.tile_size
        dt = m.dtype
        sync = _synchronizer(m.device)
        # 1. latents (cached, or encoded in one batch)
        t0 = time.perf_counter()
        latents = self._latents_for(chunk, img_t, cache, seed, stats)
        sync()
        timings["encode"] += time.perf_counter() - t0
        # 2. ControlNet + UNet with per-tile focus masks, then the x0 step (shared with training)
        t0 = time.perf_counter()
        defocus = torch.stack([dfc_t[:, t : t + tile, l : l + tile] for t, l in chunk])
        masks = torch.stack([msk_t[t : t + tile, l : l + tile] for t, l in chunk])
        focus = focus_mask(m.unet.config, masks, tile, m.vae_scale_factor)
        x0 = predict_x0(m.unet, m.controlnet, latents, defocus_condition(defocus, dt), focus, m.constants, dt)
        sync()
        timings["denoise"] += time.perf_counter() - t0
        # 3. decode
        t0 = time.perf_counter()
        decoded = decode_latents(m.vae, x0, m.scaling_factor, dt)
        sync()
        timings["decode"] += time.perf_counter() - t0
        return decoded

    def _latents_for(self, chunk, img_t, cache, seed, stats) -> torch.Tensor:
        """``(B, 4, h, w)`` float32 scaled posterior samples, from the cache where possible."""
        m = self.model
        tile = m.tile_size
        todo = [p for p in chunk if cache is None or p not in cache]
        if todo:
            x = torch.stack([img_t[:, t : t + tile, l : l + tile] for t, l in todo]).to(m.dtype)
            lat = tile // m.vae_scale_factor
            shape = (int(m.vae.config.latent_channels), lat, lat)
            noise = torch.stack([tile_noise(seed, t, l, shape) for t, l in todo]).to(x.device)
            z = encode_latents(m.vae, x, noise, m.scaling_factor)
            fresh = dict(zip(todo, z))
            if cache is not None:
                cache.update(fresh)
        else:
            fresh = {}
        stats["encoded"] += len(todo)
        stats["cached"] += len(chunk) - len(todo)
        return torch.stack([fresh[p] if p in fresh else cache[p] for p in chunk])

    def _latent_store(self, image_key, seed, hp, wp):
        if not image_key:
            return None
        key = (image_key, int(seed), hp, wp, self.model.key)
        if key in self._latents:
            self._latents.move_to_end(key)
        else:
            self._latents[key] = {}
            while len(self._latents) > self._cache_images:
                self._latents.popitem(last=False)
        return self._latents[key]


def _synchronizer(device: torch.device) -> Callable[[], None]:
    # Stage timings are only honest on GPUs if the queue is drained before reading the clock.
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


__all__ = ["DEFAULT_SEED", "MagicBokehPipeline", "balanced_batch", "RenderOutput", "tile_noise", "tile_seed"]
