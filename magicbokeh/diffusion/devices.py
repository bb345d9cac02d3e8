"""Device, precision and attention-kernel choice for the diffusion backend.

Defaults: CUDA → fp16 (xformers when it imports *and* passes a smoke test, else SDPA);
Apple MPS → fp32; CPU → bf16 when the CPU has native bf16 support (AVX-512 BF16 / AMX), else
fp32. Every choice can be overridden.
"""

from __future__ import annotations

import functools
import logging

import torch

from ..errors import MagicBokehError

logger = logging.getLogger(__name__)

DTYPE_NAMES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
SHORT_DTYPE = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` → cuda, then mps, then cpu; otherwise any torch device string (``"cuda:1"``)."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise MagicBokehError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MagicBokehError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MagicBokehError("device 'mps' was requested but Apple MPS is not available; use --device cpu.")
    return device


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when oneDNN reports native bf16 kernels on this CPU (fast bf16 matmul/conv)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(spec: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"`` → fp16 on CUDA, bf16 on capable CPUs, fp32 otherwise; or an explicit name."""
    if isinstance(spec, torch.dtype):
        dtype = spec
    else:
        spec = (spec or "auto").strip().lower()
        if spec == "auto":
            if device.type == "cuda":
                return torch.float16
            if device.type == "cpu" and cpu_supports_bf16():
                return torch.bfloat16
            return torch.float32
        if spec not in DTYPE_NAMES:
            raise MagicBokehError(f"unknown dtype {spec!r}; use auto, fp32, bf16 or fp16.")
        dtype = DTYPE_NAMES[spec]
    if dtype not in SHORT_DTYPE:
        raise MagicBokehError(f"unsupported dtype {dtype}; use fp32, bf16 or fp16.")
    if device.type == "cpu" and dtype == torch.float16:
        logger.warning("fp16 on CPU is slow and poorly supported; bf16 or fp32 is recommended.")
    return dtype


@functools.lru_cache(maxsize=8)
def xformers_status(device_str: str) -> tuple[bool, str]:
    """(usable, reason): xformers imports and runs a masked attention on ``device_str``."""
    device = torch.device(device_str)
    if device.type != "cuda":
        return False, "xformers needs CUDA"
    try:
        import xformers.ops as xops
    except Exception as exc:  # ImportError, or a broken extension raising at import
        return False, f"xformers not importable ({type(exc).__name__})"
    try:
        q = torch.randn(1, 16, 2, 64, device=device, dtype=torch.float16)
        bias = torch.zeros(1, 1, 16, 16, device=device, dtype=torch.float16).expand(1, 2, 16, 16)
        out = xops.memory_efficient_attention(q, q, q, attn_bias=bias)
        torch.cuda.synchronize(device)
        if not torch.isfinite(out).all():
            return False, "xformers smoke test gave non-finite values"
    except Exception as exc:  # no kernel for this GPU / CUDA runtime mismatch
        return False, f"xformers smoke test failed ({type(exc).__name__}: {str(exc)[:120]})"
    return True, "xformers"


def resolve_kernel(spec: str | None, device: torch.device) -> str:
    """Attention kernel: ``"auto"`` → xformers on CUDA when usable, else SDPA."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        ok, reason = xformers_status(str(device)) if device.type == "cuda" else (False, "")
        if not ok and reason and device.type == "cuda":
            logger.info("using SDPA attention: %s", reason)
        return "xformers" if ok else "sdpa"
    if spec == "xformers":
        ok, reason = xformers_status(str(device))
        if not ok:
            raise MagicBokehError(f"xformers attention was requested but is unusable here: {reason}.")
        return spec
    if spec in ("sdpa", "naive"):
        return spec
    raise MagicBokehError(f"unknown attention kernel {spec!r}; use auto, sdpa or xformers.")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


__all__ = [
    "DTYPE_NAMES",
    "SHORT_DTYPE",
    "cpu_supports_bf16",
    "empty_cache",
    "is_out_of_memory",
    "resolve_device",
    "resolve_dtype",
    "resolve_kernel",
    "xformers_status",
]
