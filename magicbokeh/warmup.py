"""Model preparation and warm-up: the networks built on CUDA once, before the first visitor.

* :func:`prepare_models` — ZeroGPU's way: build the diffusion networks and the depth model and
  move them to CUDA at start-up, not inside each GPU call;
* :func:`warm_up_at_start` — a machine with its own GPU: also run dummy tiles through every common
  tile-batch shape (:func:`common_batch_sizes`), so the first render pays no kernel selection.

Both are no-ops on machines without CUDA. Routing of GPU requests is :mod:`magicbokeh.zerogpu`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping, Sequence

from .errors import MagicBokehError
from .zerogpu import ZEROGPU_BACKEND_OPTIONS, zero_gpu_active

logger = logging.getLogger(__name__)


def prepare_models(options: Mapping[str, Any] | None = None, depth_source: str | None = None) -> list[str]:
    """Start-up, the ZeroGPU way: build the diffusion networks and the depth model on CUDA once.

    Only when a CUDA device is reported (a real GPU, or ZeroGPU's patched torch); otherwise a
    no-op, so the app starts as fast as today on CPUs. Returns notes for the console. Loading
    failures (no weights offline) are notes, not errors: the backend menu says what is missing.
    """
    notes: list[str] = []
    try:
        import torch
    except ImportError:
        return ["torch is not installed: nothing to prepare."]
    if not torch.cuda.is_available():
        return notes
    from .backends import get_backend
    from .depth import choose_depth_model, get_estimator

    zero_gpu = zero_gpu_active()
    opts = {**dict(options or {}), **(ZEROGPU_BACKEND_OPTIONS if zero_gpu else {})}
    backend = get_backend("magicbokeh")
    status = backend.availability(opts)
    if status.ok:
        t0 = time.perf_counter()
        try:
            backend.pipeline(opts)  # type: ignore[attr-defined]
            notes.append(f"MagicBokeh networks on CUDA in {time.perf_counter() - t0:.1f} s")
        except MagicBokehError as exc:
            notes.append(f"MagicBokeh not loaded: {exc}")
    else:
        notes.append(f"MagicBokeh not loaded: {status.reason}")
    source, _ = choose_depth_model(depth_source)
    est = get_estimator(source, device="cuda" if zero_gpu else None)
    if est.unavailable_reason() is None:
        try:
            est.model  # noqa: B018 - loads and moves to CUDA
            notes.append(f"depth model {est.label} on {est.device}")
        except MagicBokehError as exc:
            notes.append(f"depth model not loaded: {exc}")
    return notes


def common_batch_sizes(max_side: int = 1600, max_batch: int = 8) -> list[int]:
    """Tile-batch shapes a render at processing size ``max_side`` runs (the pipeline balances
    passes: 18 tiles at most 8 per pass run as 6 + 6 + 6, 15 as 8 + 7). Aspect ratios 1:1, 4:3,
    3:2, 16:9 in both orientations, at the cap and at 3/4 of it."""
    from .diffusion.pipeline import balanced_batch
    from .diffusion.tiling import tile_count

    sizes: set[int] = set()
    for long_side in (max_side, max(512, int(max_side * 0.75))):
        for a, b in ((1, 1), (4, 3), (3, 2), (16, 9)):
            for w, h in ((long_side, round(long_side * b / a)), (round(long_side * b / a), long_side)):
                n = tile_count(max(h, 1), max(w, 1))
                passes = math.ceil(n / max_batch)
                batch = balanced_batch(n, max_batch)
                sizes.add(batch)
                tail = n - batch * (passes - 1)
                if tail > 0:
                    sizes.add(tail)
    return sorted(sizes)


def warm_up(model: Any, batch_sizes: Sequence[int], *, repeats: int = 1) -> dict[int, float]:
    """Run dummy tiles through the diffusion pipeline so the first real render pays no kernel
    selection (cuDNN autotuning per tile-batch shape, allocator growth, lazy CUDA init).

    Args:
        model: a loaded ``MagicBokehModel``, or a ``MagicBokehPipeline`` (its model is used).
        batch_sizes: tile batches to prepare, e.g. :func:`common_batch_sizes`.
        repeats: passes per batch size.

    Returns:
        seconds of the last pass per batch size. A fresh pipeline is used, so no latents are cached.
        On ZeroGPU call it inside a GPU function (it launches CUDA kernels).
    """
    import numpy as np

    from .diffusion.pipeline import MagicBokehPipeline

    model = getattr(model, "model", model)
    pipe = MagicBokehPipeline(model, latent_cache_images=0)
    tile = int(model.tile_size)
    out: dict[int, float] = {}
    rng = np.random.default_rng(0)
    for batch in sorted({int(b) for b in batch_sizes if int(b) >= 1}):
        width = tile + (tile // 2) * (batch - 1)  # a 1 x batch strip: exactly `batch` tiles, one pass
        img = rng.random((tile, width, 3), dtype=np.float32)
        defocus = np.tile(np.linspace(0, 1, width, dtype=np.float32), (tile, 1))
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            res = pipe.render(img, defocus, defocus <= 0.1, seed=0, tile_batch=batch)
            out[batch] = time.perf_counter() - t0
        if res.stats["batch"] != batch:  # pragma: no cover - a lowered OOM cap
            logger.warning("warm-up for %d tiles per pass ran %d per pass", batch, res.stats["batch"])
    return out


def warm_up_at_start(options: Mapping[str, Any] | None = None, depth_source: str | None = None,
                     *, max_side: int | None = None) -> list[str]:
    """On a machine with its own CUDA GPU: load the networks and warm up the common tile batches.

    The first visitor then pays neither loading nor cuDNN's per-shape kernel selection (3.2 s vs
    0.59 s steady state measured on an H200 before warm-up). A no-op without CUDA and on ZeroGPU
    (kernels may only run inside a GPU call there). Returns notes for the console.
    """
    if zero_gpu_active():
        return []
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    notes = prepare_models(options, depth_source)
    from .backends import get_backend
    from .processing import default_max_side

    backend = get_backend("magicbokeh")
    if not backend.availability(dict(options or {})).ok:
        return notes
    try:
        pipe = backend.pipeline(dict(options or {}))  # type: ignore[attr-defined]
        sizes = common_batch_sizes(max_side or default_max_side("magicbokeh") or 1600)
        seconds = warm_up(pipe, sizes)
        notes.append("warmed up tile batches " + ", ".join(f"{b} ({t:.1f} s)" for b, t in seconds.items()))
    except MagicBokehError as exc:
        notes.append(f"warm-up skipped: {exc}")
    return notes


__all__ = ["common_batch_sizes", "prepare_models", "warm_up", "warm_up_at_start"]
