"""Hugging Face Spaces ZeroGPU support: one ``spaces.GPU`` call per GPU request, honest errors.

ZeroGPU attaches a GPU only inside functions decorated with ``spaces.GPU`` (the ``spaces``
package, an optional extra). The rules this module follows, read from ``spaces`` 0.51.3:

* ``import spaces`` must come before torch initialises CUDA; import this module first
  (``from magicbokeh import zerogpu`` as the app's first magicbokeh import) and it imports
  ``spaces`` when installed. Off ZeroGPU (``SPACES_ZERO_GPU`` unset) ``spaces.GPU`` returns the
  function unchanged, so the same code runs locally, in CI and on a dedicated GPU.
* The decorated function runs in a forked worker: its arguments and result are pickled. So the
  job is a plain dataclass (decoded photo, settings, focus) and the result a ``RenderResult``;
  progress callbacks that cannot be pickled are dropped on ZeroGPU.
* An exception other than ``gr.Error`` raised inside the worker reaches the caller only as
  "ZeroGPU worker error: <class name>". The task therefore returns our errors as values and
  :func:`render_request` raises them again in the calling process, message intact.
* ``duration`` may be a callable taking the same arguments as the task: :func:`gpu_duration`
  computes it from the tile count (a shorter duration gets better queue priority).
* Quota, duration and queue failures come out of ``spaces`` as ``gr.Error`` titled
  "ZeroGPU ..."; :func:`render_request` turns them into :class:`GpuUnavailable` (a
  ``MagicBokehError``) whose message suggests the classical backend, or renders with the
  classical backend when asked to (``fallback_to_classical``).
* Models are built and moved to CUDA at start-up (:mod:`magicbokeh.warmup`), not inside each
  call. Anything that launches a CUDA kernel (a warm-up, the xformers self-test) must run inside
  a GPU call on ZeroGPU, so attention is pinned to SDPA here (:data:`ZEROGPU_BACKEND_OPTIONS`).
* What ZeroGPU refuses is data (:data:`REFUSED_ON_ZEROGPU`), checked by :func:`check_allowed`.

The classical backend never requests a GPU; on ZeroGPU its depth model runs on the CPU.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import pickle
import sys
import threading
import time
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Callable

from .lru import LruCache
from .errors import MagicBokehError
from .notes import warning
from .processing import default_max_side, plan
from .request import RenderRequest, RenderSettings

logger = logging.getLogger(__name__)

#: Backends that run a diffusion network and therefore need a GPU call.
GPU_BACKENDS: frozenset[str] = frozenset({"magicbokeh", "two-stage"})
#: Seconds per 512 px tile assumed when sizing a ZeroGPU request. Measured 0.033 s on an H200 at
#: 8 tiles per pass (bench/results_diffusion_gpu.md); ZeroGPU hands out half an RTX Pro 6000
#: Blackwell, so ~3x that, which also covers a cold first batch. Env: MAGICBOKEH_GPU_TILE_SECONDS.
GPU_TILE_SECONDS_DEFAULT = 0.1
#: Fraction of a tile's time left when its latents are cached (no VAE encode): 0.45 s vs 0.59 s.
CACHED_TILE_FRACTION = 0.75
#: Seconds for Depth Anything on a GPU, including its first call in a fresh worker.
DEPTH_SECONDS = 2.0
#: Fixed cost of a GPU call: worker fork, moving the packed weights, cold kernels (seconds).
GPU_CALL_MARGIN_SECONDS = 10.0
#: Longest GPU call we request (seconds). ZeroGPU refuses longer durations for regular users;
#: env MAGICBOKEH_GPU_BUDGET_S overrides it.
GPU_BUDGET_SECONDS_DEFAULT = 120.0
#: Options forced on the diffusion backend under ZeroGPU: CUDA (the patched torch reports it
#: outside GPU calls too) and SDPA (the xformers self-test would launch a kernel at load time).
ZEROGPU_BACKEND_OPTIONS: dict[str, Any] = {"device": "cuda", "attention": "sdpa"}
#: Photos whose latents the diffusion pipeline keeps (its LATENT_CACHE_IMAGES).
_RECENT_MAX = 8

#: Words by which a failed GPU call announces itself (spaces' gr.Error titles, CUDA errors).
_GPU_FAILURE_MARKERS = ("ZeroGPU", "CUDA error", "no CUDA GPUs", "CUDA driver", "cuda runtime")


class GpuUnavailable(MagicBokehError):
    """The GPU call could not run (quota exhausted, no GPU, call failed); the classical backend can.

    Attributes:
        suggest_backend: the backend that works without a GPU ("classical").
    """

    suggest_backend = "classical"


class GpuBudgetExceeded(MagicBokehError):
    """The request would need a longer GPU call than allowed; a smaller processing size would fit."""


# ---------------------------------------------------------------------------------------------
# The spaces package
# ---------------------------------------------------------------------------------------------


_SPACES_MISSING = False


def spaces_module() -> ModuleType | None:
    """The ``spaces`` package when it imports, else None (it is an optional extra).

    ``sys.modules["spaces"] = None`` (as tests do) counts as not installed.
    """
    global _SPACES_MISSING
    if "spaces" in sys.modules:
        return sys.modules["spaces"]
    if _SPACES_MISSING:
        return None
    try:
        return importlib.import_module("spaces")
    except Exception as exc:  # noqa: BLE001 - ImportError, or spaces refusing to import
        logger.debug("spaces not available: %s", exc)
        _SPACES_MISSING = True
        return None


def zero_gpu_active() -> bool:
    """True on a ZeroGPU Space: ``spaces`` imports and ``SPACES_ZERO_GPU`` is true."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")
    return flag and spaces_module() is not None


def needs_gpu(backend: str) -> bool:
    """Whether a render with ``backend`` asks for a GPU call (never for ``classical``)."""
    return backend in GPU_BACKENDS


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if math.isfinite(value) and value > 0 else default


def gpu_budget_seconds() -> float:
    """Longest GPU call requested (seconds; env ``MAGICBOKEH_GPU_BUDGET_S``)."""
    return _env_float("MAGICBOKEH_GPU_BUDGET_S", GPU_BUDGET_SECONDS_DEFAULT)


def gpu_tile_seconds() -> float:
    """Seconds per 512 px tile assumed for a GPU call (env ``MAGICBOKEH_GPU_TILE_SECONDS``)."""
    return _env_float("MAGICBOKEH_GPU_TILE_SECONDS", GPU_TILE_SECONDS_DEFAULT)


# ---------------------------------------------------------------------------------------------
# The GPU job
# ---------------------------------------------------------------------------------------------


@dataclass
class GpuJob:
    """Everything one GPU request needs, picklable (it crosses into the ZeroGPU worker).

    Attributes:
        request: the render request, its photo already decoded (``magicbokeh.images.Photo``).
        progress: ``progress(fraction, stage)`` or None (dropped on ZeroGPU when not picklable).
        depth_cached, latents_cached: whether this process recently rendered the same photo at the
            same processing size (shortens the requested duration).
    """

    request: RenderRequest
    progress: Callable[[float, str], None] | None = None
    depth_cached: bool = False
    latents_cached: bool = False

    @property
    def processed_size(self) -> tuple[int, int]:
        """(width, height) the diffusion model will see."""
        return plan(*self.request.image.size, self.request.max_side).processed_size

    @property
    def tiles(self) -> int:
        """512 px tiles of the processed photo (the official 256 px stride)."""
        from .diffusion.tiling import tile_count

        w, h = self.processed_size
        return tile_count(h, w)


@dataclass
class _Outcome:
    """What the GPU task hands back: a result, or the error to raise in the calling process."""

    result: Any = None
    error: BaseException | None = None
    gpu_seconds: float = 0.0
    device: str = ""


def gpu_duration(job: GpuJob) -> int:
    """Seconds to request for ``job``'s GPU call (``spaces.GPU(duration=...)``).

    ``margin + depth + tiles × per-tile time``; the depth term is dropped and the tile time cut to
    75 % (no VAE encode) when this process rendered the same photo at the same size recently.
    Rounded up to whole seconds.
    """
    per_tile = gpu_tile_seconds() * (CACHED_TILE_FRACTION if job.latents_cached else 1.0)
    depth = 0.0 if job.depth_cached or not _uses_depth_model(job.request.depth) else DEPTH_SECONDS
    return int(math.ceil(GPU_CALL_MARGIN_SECONDS + depth + job.tiles * per_tile))


def _uses_depth_model(depth: Any) -> bool:
    return isinstance(depth, str) and depth != "approximate" and not os.path.isfile(depth)


def _run_job(job: GpuJob) -> _Outcome:
    """The body of the GPU call: depth and diffusion for one request (runs in the ZeroGPU worker)."""
    from .pipeline import run

    t0 = time.perf_counter()
    try:
        result = run(replace(job.request, depth_device=_depth_device_for_gpu(job.request)), job.progress)
    except BaseException as exc:  # noqa: BLE001 - handed back as a value, raised by the caller
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        logger.debug("GPU task failed", exc_info=True)
        return _Outcome(error=_picklable(exc), gpu_seconds=time.perf_counter() - t0, device=_device_label())
    return _Outcome(result=result, gpu_seconds=time.perf_counter() - t0, device=_device_label())


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _depth_device_for_gpu(request: RenderRequest) -> str | None:
    return "cuda" if zero_gpu_active() else request.depth_device


def _depth_device_for_cpu(request: RenderRequest) -> str | None:
    """The classical backend's depth device: the CPU on ZeroGPU (no GPU call is made for it)."""
    return "cpu" if zero_gpu_active() else request.depth_device


def _device_label() -> str:
    """Where GPU work actually ran: 'ZeroGPU', 'CUDA (<name>)' or 'CPU (no GPU)'."""
    if zero_gpu_active():
        return "ZeroGPU"
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return f"CUDA ({torch.cuda.get_device_name(0)})"
    except Exception:  # noqa: BLE001
        pass
    return "CPU (no GPU)"


_TASKS: dict[int, Callable[[GpuJob], _Outcome]] = {}
_TASKS_LOCK = threading.Lock()


def gpu_task() -> Callable[[GpuJob], _Outcome]:
    """The GPU entry point: :func:`_run_job` wrapped once by ``spaces.GPU(duration=gpu_duration)``.

    Without ``spaces`` it is :func:`_run_job` itself. ``spaces.GPU`` returns the function unchanged
    off ZeroGPU, so the wrapped task is always safe to call.
    """
    spaces = spaces_module()
    key = id(spaces)
    with _TASKS_LOCK:
        if key not in _TASKS:
            _TASKS[key] = _run_job if spaces is None else spaces.GPU(duration=gpu_duration)(_run_job)
        return _TASKS[key]


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

#: GPU work runs one request at a time per device (off ZeroGPU, where the scheduler does it).
#: Classical renders never take this slot, so they run in parallel beside a diffusion render.
GPU_SLOT = threading.Lock()

_RECENT: LruCache[bool] = LruCache(_RECENT_MAX)


def _recent_key(photo_key: str, job: GpuJob) -> tuple:
    opts = dict(getattr(job.request.settings, "backend_options", {}) or {})
    return (photo_key, job.processed_size, opts.get("seed", 42), str(job.request.depth))


def _remember(key: tuple) -> None:
    _RECENT.put(key, True)


def _seen(key: tuple) -> bool:
    return key in _RECENT


def is_gpu_failure(exc: BaseException) -> bool:
    """True for a failed GPU call: spaces' "ZeroGPU ..." errors (quota, duration, queue, worker)
    and CUDA runtime errors. Our own MagicBokehError (bad input) is not one."""
    if isinstance(exc, MagicBokehError):
        return False
    title = str(getattr(exc, "title", "") or "")
    text = f"{title} {exc}"
    return any(marker.lower() in text.lower() for marker in _GPU_FAILURE_MARKERS)


def gpu_failure_message(exc: BaseException) -> str:
    """A user-facing sentence for a failed GPU call that offers the classical backend."""
    title = str(getattr(exc, "title", "") or "").strip()
    detail = str(getattr(exc, "message", "") or exc).strip()
    what = f"{title}: {detail}" if title and not detail.startswith(title) else detail
    return (
        f"The GPU is not available for this render ({what}). The classical backend runs without a "
        "GPU: choose it under Backend (API: backend='classical'), or try again later."
    )


def backend_options_for(settings: Any) -> Any:
    """``settings`` with the ZeroGPU options (CUDA, SDPA) for a GPU backend when on ZeroGPU."""
    if not (zero_gpu_active() and needs_gpu(settings.backend)):
        return settings
    merged = {**dict(settings.backend_options), **ZEROGPU_BACKEND_OPTIONS}
    return replace(settings, backend_options=merged)


#: What ZeroGPU refuses: (kind of request, backend needs a GPU) -> why, and what works instead.
REFUSED_ON_ZEROGPU: dict[tuple[str, bool], str] = {
    # A sweep is N renders; one ZeroGPU call per request cannot hold them within the quota.
    ("sweep", True): "sweeps with the {backend} backend need a dedicated GPU; on this ZeroGPU Space, "
                     "make the sweep with the classical backend.",
}


def check_allowed(kind: str, backend: str) -> None:
    """Raise MagicBokehError when this machine refuses a ``kind`` ("render", "sweep") request."""
    if not zero_gpu_active():
        return
    reason = REFUSED_ON_ZEROGPU.get((kind, needs_gpu(backend)))
    if reason:
        raise MagicBokehError(reason.format(backend=backend))


def render_request(
    request: RenderRequest,
    progress: Callable[[float, str], None] | None = None,
    *,
    fallback_to_classical: bool = False,
):
    """Render one request, with at most one GPU call (see the module notes).

    ``fallback_to_classical``: when the GPU call fails (quota, no GPU), render with the classical
    backend and say so in the messages instead of raising :class:`GpuUnavailable`.

    * classical backend: :func:`magicbokeh.pipeline.run` directly, never a GPU call (on ZeroGPU
      its depth model runs on the CPU);
    * GPU backends: the photo is decoded here (a corrupt upload fails before any GPU is asked
      for), the duration is computed by :func:`gpu_duration`, checked against
      :func:`gpu_budget_seconds` (:class:`GpuBudgetExceeded` when too long) and exactly one call of
      :func:`gpu_task` runs depth and diffusion together.

    Returns:
        the ``RenderResult``; its ``messages`` end with the device used and the GPU time.

    Raises:
        MagicBokehError: bad input (unchanged), GpuBudgetExceeded, GpuUnavailable.
    """
    from .depth.from_photo import open_photo
    from .pipeline import run

    settings = request.settings or RenderSettings()
    request = replace(request, settings=settings)
    if not needs_gpu(settings.backend):
        return run(replace(request, depth_device=_depth_device_for_cpu(request)), progress)

    original = request
    photo = open_photo(request.image)  # keeps a phone photo's own depth (it crosses to the worker)
    request = replace(request, image=photo, settings=backend_options_for(settings.checked()))
    if zero_gpu_active() and progress is not None:
        try:
            pickle.dumps(progress)
        except Exception:  # noqa: BLE001 - a closure cannot cross into the worker
            logger.debug("progress callback dropped: not picklable")
            progress = None
    job = GpuJob(request=request, progress=progress)
    recent = _recent_key(photo.key, job)
    job.latents_cached = job.depth_cached = _seen(recent)
    seconds = gpu_duration(job)
    budget = gpu_budget_seconds()
    if seconds > budget:
        w, h = job.processed_size
        raise GpuBudgetExceeded(
            f"this photo is processed at {w}x{h} ({job.tiles} tiles, ~{seconds} s of GPU time), more than "
            f"the {budget:.0f} s a GPU call may take here; choose a smaller processing size "
            f"(e.g. {default_max_side(settings.backend)} px) or the classical backend."
        )
    try:
        if zero_gpu_active():
            outcome = gpu_task()(job)
        else:
            with GPU_SLOT:
                outcome = gpu_task()(job)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not is_gpu_failure(exc):
            raise
        return _gpu_failed(exc, original, request.settings, progress, fallback_to_classical)
    if outcome.error is not None:
        if is_gpu_failure(outcome.error):
            return _gpu_failed(outcome.error, original, request.settings, progress, fallback_to_classical)
        raise outcome.error
    _remember(recent)
    result = outcome.result
    device = outcome.device or _device_label()
    note = f"Ran on {device}: {outcome.gpu_seconds:.1f} s of GPU work"
    if device.startswith("ZeroGPU"):
        note += f" (requested {seconds} s)"
    elif device.startswith("CPU"):
        note = "No GPU here: MagicBokeh ran on the CPU" + (
            " (spaces is installed but this is not a ZeroGPU Space)" if spaces_module() is not None else "")
    result.messages.append(note + ".")
    return result


def _gpu_failed(exc: BaseException, request: RenderRequest, settings: Any, progress: Any, fallback: bool):
    message = gpu_failure_message(exc)
    if not fallback:
        raise GpuUnavailable(message) from None
    from .pipeline import run

    classical = replace(settings, backend=GpuUnavailable.suggest_backend, backend_options={})
    result = run(replace(request, settings=classical, depth_device=_depth_device_for_cpu(request)), progress)
    result.messages.insert(0, warning(message.split(" The classical backend")[0]
                                      + " Rendered with the classical backend instead."))
    return result


# Import spaces now, before anything imports torch (its rule); a no-op when it is not installed.
spaces_module()

__all__ = [
    "GPU_BACKENDS",
    "GPU_SLOT",
    "REFUSED_ON_ZEROGPU",
    "ZEROGPU_BACKEND_OPTIONS",
    "GpuBudgetExceeded",
    "GpuJob",
    "GpuUnavailable",
    "backend_options_for",
    "check_allowed",
    "gpu_budget_seconds",
    "gpu_duration",
    "gpu_failure_message",
    "gpu_task",
    "is_gpu_failure",
    "needs_gpu",
    "render_request",
    "spaces_module",
    "zero_gpu_active",
]
