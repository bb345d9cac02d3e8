"""``MagicBokehBackend``: the one-step diffusion model behind the ``magicbokeh`` backend name.

Importing this module is cheap (no torch); the networks load lazily on the first render and
stay loaded for the process (keyed by sources, device, dtype and attention kernel).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..backends import Availability, Backend, BackendResult, ProgressCallback
from ..errors import BackendUnavailable, MagicBokehError
from ..focus import check_k, model_condition
from ..subject.defocus import SUBJECT_WEIGHT_OPTION, apply_subject_weight
from ..settings import FOCAL_RANGE_MAX
from . import sources

logger = logging.getLogger(__name__)

#: Seconds per 512 px tile measured on the 2-core development CPU (bench/bench_diffusion_cpu.py).
CPU_TILE_SECONDS = {"bf16": 15.0, "fp32": 29.0}
#: Seconds per 512 px tile on a datacenter GPU in fp16, 8 tiles per pass (H200, bench/bench_diffusion_gpu.py).
GPU_TILE_SECONDS = 0.035
_REQUIRED_PACKAGES = ("torch", "diffusers", "safetensors", "huggingface_hub")
_COLOR_FIXES = ("adain", "wavelet", "none")
_DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class _Options:
    base: str | None
    checkpoint: str | None
    seed: int
    tile_batch: int | None
    dtype: str
    device: str
    color_fix: str
    compile: bool
    quantize_disparity: bool
    focal_range: float
    attention: str
    cache_dir: str | None


class MagicBokehBackend(Backend):
    """Official MagicBokeh (one-step SD2.1 + ControlNet + focus-masked attention), tiled at 512 px."""

    name = "magicbokeh"
    label = "MagicBokeh one-step diffusion (CVPR 2026)"

    #: Options read from ``render(..., options=...)``; all optional.
    OPTIONS: dict[str, str] = {
        "base": "SD2.1-base folder or Hub repo id (default: $MAGICBOKEH_BASE, else "
        f"{sources.DEFAULT_BASE}; the {sources.ALTERNATIVE_BASES[0]} mirror also works).",
        "checkpoint": "lora.pkl path, a trained DIR/final folder (its recorded base is used when no base "
        "is given), or Hub owner/repo[/file] (default: $MAGICBOKEH_CHECKPOINT, else "
        f"{sources.DEFAULT_CHECKPOINT_REPO}/{sources.DEFAULT_CHECKPOINT_FILE}).",
        "seed": "int, seed of the VAE posterior samples (default 42); same seed, same output.",
        "tile_batch": "int >= 1, most 512 px tiles per forward pass (default 1 on CPU, 8 on GPU, split "
        "into equal passes; halved automatically after an out-of-memory error).",
        "dtype": "auto | fp32 | bf16 | fp16 (auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32).",
        "device": "auto | cpu | cuda | cuda:N | mps (auto: CUDA, then MPS, then CPU).",
        "color_fix": "adain (official) | wavelet | none: colour correction towards the input photo.",
        "compile": "bool, torch.compile the UNet and ControlNet (CUDA; slow first render).",
        "quantize_disparity": "bool (default True): truncate disparity and focus to 8 bits as the "
        "official code does (parity).",
        "focal_range": "float in [0, 1] (default 0): disparity width around the focus kept sharp.",
        "attention": "auto | sdpa | xformers (auto: xformers on CUDA when it works, else SDPA).",
        "cache_dir": "folder for the converted-weights cache (default $MAGICBOKEH_CACHE_DIR or "
        "~/.cache/magicbokeh; 'off' disables it).",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipeline: Any = None
        self._pipeline_key: tuple | None = None

    # -- availability ---------------------------------------------------------------------------

    def availability(self, options: Mapping[str, Any] | None = None) -> Availability:
        """Cheap check: packages importable and weights local or in the HF cache (no loading).

        Honours the ``base`` / ``checkpoint`` options, else ``$MAGICBOKEH_BASE`` /
        ``$MAGICBOKEH_CHECKPOINT``, else the Hub defaults. Imports torch only once the weights are
        known to be available (so an offline app start stays fast).
        """
        options = options or {}
        missing_pkgs = [p for p in _REQUIRED_PACKAGES if importlib.util.find_spec(p) is None]
        if missing_pkgs:
            return Availability(
                False,
                f"MagicBokeh needs {', '.join(missing_pkgs)}; install the requirements: "
                "pip install -r requirements.txt",
            )
        try:
            base, ckpt = sources.resolve_sources(options.get("base") or None, options.get("checkpoint") or None)
            missing = sources.missing_files(base, ckpt)
        except MagicBokehError as exc:
            return Availability(False, str(exc))
        if not missing:
            note, summary = _device_note()
            return Availability(True, f"weights ready ({base.describe()} + {ckpt.describe()}); {note}", summary)
        local_missing = [m for m in missing if os.path.isabs(m)]
        if local_missing:
            return Availability(False, f"MagicBokeh weights missing: {', '.join(local_missing)}.")
        shown = sources.describe_missing(missing)
        if sources.hub_offline():
            return Availability(
                False,
                f"MagicBokeh weights not in the Hugging Face cache and HF_HUB_OFFLINE is set (missing "
                f"{shown}); run once online, set HF_HOME to a cache that has them, or pass "
                "--base DIR --checkpoint PATH.",
            )
        from ..hub import hub_reachable

        if not hub_reachable():
            return Availability(
                False,
                f"MagicBokeh weights not in the Hugging Face cache and the Hub is unreachable (missing "
                f"{shown}); connect once, or pass --base DIR --checkpoint PATH.",
            )
        note, summary = _device_note()
        return Availability(
            True,
            f"first use downloads ~{sources.DOWNLOAD_GB:.1f} GB from the Hugging Face Hub ({shown}); {note}",
            f"{summary}, downloads ~{sources.DOWNLOAD_GB:.1f} GB first",
        )

    # -- rendering ------------------------------------------------------------------------------

    def render(
        self,
        image: np.ndarray,
        disparity: np.ndarray,
        focus_disparity: float,
        k: float,
        *,
        options: Mapping[str, Any],
        image_key: str,
        progress: ProgressCallback | None = None,
    ) -> BackendResult:
        """Render with the official model; see ``OPTIONS``. K = 0 restores without blur."""
        opts = parse_options(options)
        k = check_k(k)
        f = float(focus_disparity)
        if not (0.0 <= f <= 1.0):
            raise MagicBokehError(f"focus disparity {f:g} is outside [0, 1].")
        image = np.asarray(image, dtype=np.float32)
        disparity = np.asarray(disparity, dtype=np.float32)
        if disparity.shape != image.shape[:2]:
            raise MagicBokehError(
                f"disparity is {disparity.shape[1]}x{disparity.shape[0]} but the photo is "
                f"{image.shape[1]}x{image.shape[0]}; pass it at photo size."
            )

        t0 = time.perf_counter()
        pipe = self.pipeline(opts, progress)
        t_load = time.perf_counter() - t0

        # The official model sees 8-bit truncated disparity and focus (spec §1.2, §12.1).
        defocus, in_focus, f = model_condition(disparity, f, k, quantize=opts.quantize_disparity,
                                               focal_range=opts.focal_range)
        # Keep the subject sharp (our extension): defocus 0 on it, and the attention's in-focus
        # mask is the subject united with the official in-focus region.
        defocus, in_focus = apply_subject_weight(defocus, in_focus, options.get(SUBJECT_WEIGHT_OPTION))
        out = pipe.render(
            image,
            defocus,
            in_focus,
            seed=opts.seed,
            tile_batch=opts.tile_batch,
            color_fix=opts.color_fix,
            image_key=image_key,
            progress=progress,
        )
        model = pipe.model
        messages = [
            f"MagicBokeh on {model.describe()}: {out.stats['tiles']} tile(s) of {model.tile_size} px, "
            f"{out.stats['batch']} per pass, seed {opts.seed}, colour fix {opts.color_fix}"
            + (" (restoration only, K = 0)" if k == 0 else ""),
        ]
        if out.stats["cached"]:
            messages.append(f"reused cached latents for {out.stats['cached']} of {out.stats['tiles']} tiles")
        if t_load > 1.0:
            src = "converted cache" if model.info.get("from_cache") else "checkpoint conversion"
            messages.append(f"loaded weights in {t_load:.1f} s ({src})")
        timings = {"load": t_load, **out.timings}
        return BackendResult(out.image, messages, timings, focus_disparity=f, defocus=defocus)

    def restore(
        self,
        image: np.ndarray,
        *,
        options: Mapping[str, Any],
        image_key: str,
        progress: ProgressCallback | None = None,
    ) -> BackendResult:
        """Restoration only (K = 0: every pixel in focus, no synthetic blur)."""
        zeros = np.zeros(np.asarray(image).shape[:2], np.float32)
        return self.render(image, zeros, 0.0, 0.0, options=options, image_key=image_key, progress=progress)

    def pipeline(self, opts: "_Options | Mapping[str, Any]", progress: ProgressCallback | None = None):
        """The loaded ``MagicBokehPipeline`` for these options (loads on first use)."""
        if not isinstance(opts, _Options):
            opts = parse_options(opts)
        from .loading import load_magicbokeh
        from .pipeline import MagicBokehPipeline

        key = (opts.base, opts.checkpoint, opts.device, opts.dtype, opts.attention, opts.compile, opts.cache_dir)
        with self._lock:
            if self._pipeline is None or self._pipeline_key != key:

                def load_progress(fraction: float, stage: str) -> None:
                    if progress is not None:
                        progress(0.0, stage)

                self._pipeline = None  # drop the old networks before loading new ones
                model = load_magicbokeh(
                    opts.base,
                    opts.checkpoint,
                    device=opts.device,
                    dtype=opts.dtype,
                    attention=opts.attention,
                    compile=opts.compile,
                    cache_dir=opts.cache_dir,
                    progress=load_progress,
                )
                if self._pipeline is None or self._pipeline.model is not model:
                    self._pipeline = MagicBokehPipeline(model)
                self._pipeline_key = key
            return self._pipeline


def parse_options(options: Mapping[str, Any] | None) -> _Options:
    """Validate backend options (unknown keys, e.g. the classical renderer's, are ignored)."""
    o = dict(options or {})

    def choice(name: str, allowed: tuple[str, ...], default: str) -> str:
        value = str(o.get(name) or default).strip().lower()
        if value not in allowed:
            raise MagicBokehError(f"{name}={value!r} is not one of {', '.join(allowed)}.")
        return value

    try:
        seed = int(o.get("seed", 42) if o.get("seed") is not None else 42)
        tile_batch = None if o.get("tile_batch") in (None, "", 0) else int(o["tile_batch"])
        focal_range = float(o.get("focal_range") or 0.0)
    except (TypeError, ValueError) as exc:
        raise MagicBokehError(f"bad MagicBokeh option: {exc}") from None
    if tile_batch is not None and tile_batch < 1:
        raise MagicBokehError(f"tile_batch must be >= 1; got {tile_batch}.")
    if not (0.0 <= focal_range <= FOCAL_RANGE_MAX):
        raise MagicBokehError(f"focal range {focal_range:g} is outside [0, {FOCAL_RANGE_MAX:g}].")
    device = str(o.get("device") or "auto").strip().lower()
    quantize = o.get("quantize_disparity", True)
    return _Options(
        base=str(o["base"]) if o.get("base") else None,
        checkpoint=str(o["checkpoint"]) if o.get("checkpoint") else None,
        seed=seed,
        tile_batch=tile_batch,
        dtype=choice("dtype", _DTYPES, "auto"),
        device=device,
        color_fix=choice("color_fix", _COLOR_FIXES, "adain"),
        compile=bool(o.get("compile", False)),
        quantize_disparity=True if quantize is None else bool(quantize),
        focal_range=focal_range,
        attention=choice("attention", ("auto", "sdpa", "xformers"), "auto"),
        cache_dir=str(o["cache_dir"]) if o.get("cache_dir") else None,
    )


def estimate_seconds(height: int, width: int, *, device: str = "cpu", dtype: str = "bf16") -> float:
    """Rough render time (s) for an ``height`` × ``width`` photo, from the measured tile cost."""
    from .tiling import tile_count

    tiles = tile_count(height, width)
    if device.startswith("cuda"):
        return tiles * GPU_TILE_SECONDS
    per_tile = CPU_TILE_SECONDS.get(dtype, CPU_TILE_SECONDS["fp32"])
    cores = min(max(os.cpu_count() or 2, 2), 32)
    return tiles * per_tile * (2.0 / cores) ** 0.8  # measured on 2 cores; assume sub-linear scaling


def _device_note() -> tuple[str, str]:
    """(sentence, few-word summary) of where and how fast it will run (imports torch, loads nothing)."""
    try:
        import torch
    except Exception as exc:  # pragma: no cover - checked above
        raise BackendUnavailable(f"torch failed to import: {exc}") from exc
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        eta = estimate_seconds(1024, 1562, device="cuda")
        return (
            f"runs on CUDA ({name}) in fp16, about {eta:.1f} s for a 1562x1024 photo on an H200-class GPU",
            f"CUDA fp16, ~{eta:.1f} s per 1.6 MP photo",
        )
    from .devices import cpu_supports_bf16

    dtype = "bf16" if cpu_supports_bf16() else "fp32"
    eta = estimate_seconds(1024, 1562, device="cpu", dtype=dtype)
    per_tile = eta / 18
    sentence = (
        f"runs on CPU in {dtype} (no GPU): about {per_tile:.0f} s per 512 px tile, "
        f"~{eta / 60:.0f} min for a 1562x1024 photo (18 tiles)"
    )
    return sentence, f"CPU {dtype}, ~{per_tile:.0f} s per 512 px tile"


__all__ = ["MagicBokehBackend", "estimate_seconds", "parse_options"]
