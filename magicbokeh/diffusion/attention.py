"""Focus-aware masked self-attention (official spec §3) and the plain processor for other layers.

The nine up-block self-attentions of the UNet run two passes over the same tokens:

* a plain pass, ``softmax(Q Kᵀ / √d_h) V`` with the (LoRA-merged) projections;
* a masked pass with the processor's own low-rank adapters (scale ``1 / r``) in which a token
  attends only to tokens of its own focus class (in focus / out of focus).

The output is ``to_out(plain) + s · to_out_lora(masked)``: the masked branch goes only through the
processor's ``to_out_lora``.

The official code adds a float ``-100`` between classes. That is a two-group block mask: the
weights it leaves across classes are ~e⁻¹⁰⁰ ≈ 4e-44, below float resolution next to the in-class
weights, so a boolean mask (SDPA) gives the same result. ``kernel="naive"`` keeps the official
explicit-score formulation (fp32 ``-100`` mask repeated per head) as a reference for tests.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

#: Additive score the official code puts between tokens of different focus classes.
OFFICIAL_MASK_VALUE = -100.0
#: Attention kernels: torch SDPA, xformers memory-efficient attention (CUDA), explicit scores.
KERNELS = ("sdpa", "xformers", "naive")
#: The official processor's LoRA alpha (hard-coded 1.0, so the scale is 1 / rank).
PROCESSOR_LORA_ALPHA = 1.0


def is_focus_attention(processor_name: str) -> bool:
    """The official selection rule: every ``up_blocks`` self-attention (``...attn1.processor``)."""
    return "up_blocks" in processor_name and processor_name.endswith("attn1.processor")


class FocusMask:
    """Focus classes of the tokens at every UNet resolution, for one batch of tiles.

    Built once per forward from the pixel-space in-focus mask of each tile and shared by all
    masked processors; derived masks are cached per token count.

    Args:
        classes: token count ``N`` -> ``(B, N)`` bool tensor, True = in focus.
    """

    def __init__(self, classes: dict[int, torch.Tensor]):
        self.classes = classes
        self._uniform: dict[int, bool] = {}
        self._bool: dict[int, torch.Tensor] = {}
        self._bias: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    @classmethod
    def from_pixel_mask(cls, in_focus: torch.Tensor, grids: Sequence[tuple[int, int]]) -> "FocusMask":
        """Downsample a ``(B, H, W)`` bool in-focus mask to each token grid ``(h, w)``.

        Nearest neighbour with top-left sampling, as ``F.interpolate(mode="nearest")`` in the
        official code: output pixel ``i`` reads source pixel ``floor(i · H / h)``.
        """
        if in_focus.ndim != 3:
            raise ValueError(f"in-focus mask must be (B, H, W); got {tuple(in_focus.shape)}")
        b, h_px, w_px = in_focus.shape
        mask = in_focus.bool()
        classes: dict[int, torch.Tensor] = {}
        for h, w in grids:
            rows = torch.arange(h, device=mask.device) * h_px // h
            cols = torch.arange(w, device=mask.device) * w_px // w
            classes[h * w] = mask.index_select(1, rows).index_select(2, cols).reshape(b, h * w)
        return cls(classes)

    def token_classes(self, n: int) -> torch.Tensor:
        """``(B, N)`` bool classes for a layer with ``n`` tokens."""
        try:
            return self.classes[n]
        except KeyError:
            raise ValueError(
                f"no focus mask for a layer with {n} tokens; masks exist for {sorted(self.classes)}"
            ) from None

    def is_uniform(self, n: int) -> bool:
        """True when every tile has a single class at this resolution, so no mask is needed."""
        if n not in self._uniform:
            c = self.token_classes(n)
            self._uniform[n] = bool((c.all(dim=1) | (~c).all(dim=1)).all())
        return self._uniform[n]

    def bool_mask(self, n: int) -> torch.Tensor:
        """``(B, 1, N, N)`` bool, True where query and key share a class (SDPA: may attend)."""
        if n not in self._bool:
            c = self.token_classes(n)
            self._bool[n] = (c[:, :, None] == c[:, None, :]).unsqueeze(1)
        return self._bool[n]

    def additive_bias(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """``(B, 1, N, N)`` additive bias (0 / -inf) whose row stride is a multiple of 8.

        xformers' cutlass kernel needs every stride but the last aligned to 128 bits, so the
        tensor is allocated with the key dimension padded and sliced back.
        """
        key = (n, dtype)
        if key not in self._bias:
            same = self.bool_mask(n)
            padded = (n + 7) // 8 * 8
            bias = torch.zeros(*same.shape[:-1], padded, dtype=dtype, device=same.device)
            bias[..., :n].masked_fill_(~same, float("-inf"))
            self._bias[key] = bias[..., :n]
        return self._bias[key]


# ---------------------------------------------------------------------------------------------
# Kernels: (B, N, C) projections in, (B, N, C) attention output out.


def _sdpa(q, k, v, heads: int, scale: float, mask: torch.Tensor | None) -> torch.Tensor:
    b, n, c = q.shape
    q, k, v = (t.view(b, -1, heads, c // heads).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=scale)
    return out.transpose(1, 2).reshape(b, n, c)


def _xformers(q, k, v, heads: int, scale: float, bias: torch.Tensor | None) -> torch.Tensor:
    import xformers.ops as xops  # only reached on CUDA after a successful probe

    b, n, c = q.shape
    q, k, v = (t.view(b, -1, heads, c // heads) for t in (q, k, v))
    if bias is not None:
        bias = bias.expand(b, heads, n, n)  # stride 0 over heads is accepted
    out = xops.memory_efficient_attention(q, k, v, attn_bias=bias, scale=scale)
    return out.reshape(b, n, c)


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    scale: float,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference attention with explicit scores, as the official processor computes it.

    Scores ``baddbmm`` → (+ fp32 ``-100`` mask between classes, repeated per head) → softmax →
    ``bmm``. Heads are laid out batch-major (``b·H + h``) and the mask is repeated to match, so
    batches > 1 get the right mask (the official head-major repeat does not).

    Args:
        q, k, v: ``(B, N, C)`` projections.
        heads: number of heads; ``C`` must be divisible by it.
        scale: score scale, ``1 / sqrt(C / heads)``.
        classes: optional ``(B, N)`` bool focus classes.
    """
    b, n, c = q.shape
    d = c // heads

    def to_bh(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, -1, heads, d).permute(0, 2, 1, 3).reshape(b * heads, -1, d)

    qh, kh, vh = to_bh(q), to_bh(k), to_bh(v)
    empty = torch.empty(b * heads, n, kh.shape[1], dtype=qh.dtype, device=qh.device)
    scores = torch.baddbmm(empty, qh, kh.transpose(1, 2), beta=0, alpha=scale)
    if classes is not None:
        differs = classes[:, :, None] != classes[:, None, :]
        mask = differs.to(torch.float32) * OFFICIAL_MASK_VALUE
        scores = scores + mask.repeat_interleave(heads, dim=0)
    probs = scores.softmax(dim=-1).to(vh.dtype)
    out = torch.bmm(probs, vh)
    return out.view(b, heads, n, d).permute(0, 2, 1, 3).reshape(b, n, c)


def attend(
    kernel: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    scale: float,
    focus: FocusMask | None = None,
) -> torch.Tensor:
    """Self-attention with ``kernel``; ``focus`` restricts tokens to their own focus class."""
    n = q.shape[1]
    masked = focus is not None and not focus.is_uniform(n)
    if kernel == "sdpa":
        return _sdpa(q, k, v, heads, scale, focus.bool_mask(n) if masked else None)
    if kernel == "xformers":
        return _xformers(q, k, v, heads, scale, focus.additive_bias(n, q.dtype) if masked else None)
    if kernel == "naive":
        classes = focus.token_classes(n) if focus is not None else None
        return naive_attention(q, k, v, heads, scale, classes)
    raise ValueError(f"unknown attention kernel {kernel!r}; choose one of {KERNELS}")


# ---------------------------------------------------------------------------------------------
# Processors


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown attention kernel {kernel!r}; choose one of {KERNELS}")


def _self_attention_tokens(attn, hidden_states, encoder_hidden_states, attention_mask):
    """Check the call is a plain self-attention and return ``_to_tokens(hidden_states)``."""
    # The MagicBokeh networks have no cross-attention and no spatial/group norm in attn1.
    if encoder_hidden_states is not None:
        raise ValueError("MagicBokeh attention processors handle self-attention only")
    if attn.spatial_norm is not None or attn.group_norm is not None:
        raise ValueError("MagicBokeh attention processors do not support spatial or group norm")
    if attention_mask is not None:
        raise ValueError("MagicBokeh attention processors take no attention_mask")
    return _to_tokens(hidden_states)


class PlainAttnProcessor:
    """Self-attention with a chosen kernel; accepts and ignores ``focus_mask``.

    Installed on every self-attention that is not focus-masked, so that passing
    ``cross_attention_kwargs={"focus_mask": ...}`` to the UNet reaches the masked layers without
    diffusers warning about an unexpected argument on the others.
    """

    def __init__(self, kernel: str = "sdpa"):
        _check_kernel(kernel)
        self.kernel = kernel

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        focus_mask: FocusMask | None = None,
    ) -> torch.Tensor:
        x, restore = _self_attention_tokens(attn, hidden_states, encoder_hidden_states, attention_mask)
        out = attend(self.kernel, attn.to_q(x), attn.to_k(x), attn.to_v(x), attn.heads, attn.scale)
        out = attn.to_out[1](attn.to_out[0](out))
        return _finish(attn, restore(out), hidden_states)


class FocusAttnProcessor(nn.Module):
    """The focus-aware processor of spec §3.3, with its four low-rank adapters as submodules.

    Being an ``nn.Module`` installed as ``attn.processor``, its weights live in the UNet's state
    dict under exactly the official ``processor_state_dict`` names
    (``<layer>.processor.to_q_lora.0.weight``) and move with ``unet.to()``.

    Args:
        hidden_size: channel width ``d`` of the layer.
        rank: adapter rank ``r`` (``state_dict_attn`` in ``lora.pkl``).
        kernel: one of ``KERNELS``.
        lora_alpha: adapter alpha; the official value 1.0 gives scale ``1 / r``.
    """

    def __init__(
        self, hidden_size: int, rank: int, *, kernel: str = "sdpa", lora_alpha: float = PROCESSOR_LORA_ALPHA
    ):
        super().__init__()
        _check_kernel(kernel)
        self.hidden_size = hidden_size
        self.rank = rank
        self.kernel = kernel
        self.lora_scale = lora_alpha / rank
        for name in ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora"):
            setattr(
                self,
                name,
                nn.Sequential(
                    nn.Linear(hidden_size, rank, bias=False), nn.Linear(rank, hidden_size, bias=False)
                ),
            )

    def __call__(  # a processor is called, not forwarded: diffusers inspects this signature
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        focus_mask: FocusMask | None = None,
    ) -> torch.Tensor:
        x, restore = _self_attention_tokens(attn, hidden_states, encoder_hidden_states, attention_mask)
        s = self.lora_scale
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        # 1. plain pass (no mask)
        plain = attend(self.kernel, q, k, v, attn.heads, attn.scale)
        # 2. masked pass: same projections plus the processor's own low-rank adapters
        q2 = q + s * self.to_q_lora(x)
        k2 = k + s * self.to_k_lora(x)
        v2 = v + s * self.to_v_lora(x)
        masked = attend(self.kernel, q2, k2, v2, attn.heads, attn.scale, focus_mask)
        # 3. the masked branch reaches the output only through to_out_lora
        out = attn.to_out[0](plain) + s * self.to_out_lora(masked)
        out = attn.to_out[1](out)
        return _finish(attn, restore(out), hidden_states)

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, rank={self.rank}, kernel={self.kernel!r}"


def _to_tokens(hidden_states: torch.Tensor):
    """(B, C, H, W) or (B, N, C) -> (B, N, C) and a function that restores the input layout."""
    if hidden_states.ndim == 4:
        b, c, h, w = hidden_states.shape
        x = hidden_states.view(b, c, h * w).transpose(1, 2)
        return x, lambda t: t.transpose(1, 2).reshape(b, c, h, w)
    return hidden_states, lambda t: t


def _finish(attn, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def set_kernel(model: nn.Module, kernel: str) -> None:
    """Switch every MagicBokeh processor inside ``model`` to ``kernel``."""
    _check_kernel(kernel)
    for module in model.modules():
        proc = getattr(module, "processor", None)
        if isinstance(proc, (PlainAttnProcessor, FocusAttnProcessor)):
            proc.kernel = kernel


__all__ = [
    "FocusAttnProcessor",
    "FocusMask",
    "KERNELS",
    "OFFICIAL_MASK_VALUE",
    "PlainAttnProcessor",
    "attend",
    "is_focus_attention",
    "naive_attention",
    "set_kernel",
]
