"""Focus-aware masked attention: optimised kernels vs the explicit-score reference (spec §3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffusion_fixtures import torch_single_thread  # noqa: F401

from magicbokeh.diffusion.attention import (
    FocusAttnProcessor,
    FocusMask,
    PlainAttnProcessor,
    attend,
    naive_attention,
)
from magicbokeh.diffusion.reference import OfficialMaskedProcessor, official_mask_table

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _classes(kind: str, b: int, n: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "random":
        return torch.rand(b, n, generator=gen) < 0.4
    if kind == "all_in":
        return torch.ones(b, n, dtype=torch.bool)
    if kind == "all_out":
        return torch.zeros(b, n, dtype=torch.bool)
    if kind == "mixed_batch":  # one item uniform, the others two-group
        c = torch.rand(b, n, generator=gen) < 0.5
        c[0] = True
        return c
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["random", "all_in", "all_out", "mixed_batch"])
@pytest.mark.parametrize("b", [1, 3])
def test_sdpa_matches_naive_reference(kind, b):
    gen = torch.Generator().manual_seed(b)
    n, heads, c = 64, 4, 32
    q, k, v = (torch.randn(b, n, c, generator=gen) * 2 for _ in range(3))
    classes = _classes(kind, b, n, gen)
    focus = FocusMask({n: classes})
    fast = attend("sdpa", q, k, v, heads, (c // heads) ** -0.5, focus)
    ref = naive_attention(q, k, v, heads, (c // heads) ** -0.5, classes)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)
    uniform = bool(((classes.all(1)) | (~classes).all(1)).all())
    assert uniform == (kind in ("all_in", "all_out") or (kind == "mixed_batch" and b == 1))
    if uniform:  # single-class masks change nothing
        plain = naive_attention(q, k, v, heads, (c // heads) ** -0.5, None)
        torch.testing.assert_close(fast, plain, atol=2e-5, rtol=1e-5)
    else:  # and a real two-group mask does change the result
        plain = attend("sdpa", q, k, v, heads, (c // heads) ** -0.5, None)
        assert (fast - plain).abs().max() > 1e-2


def test_masks_broadcast_per_batch_item():
    gen = torch.Generator().manual_seed(7)
    n, heads, c = 16, 2, 8
    q, k, v = (torch.randn(3, n, c, generator=gen) for _ in range(3))
    classes = torch.rand(3, n, generator=gen) < 0.5
    batched = attend("sdpa", q, k, v, heads, 0.5, FocusMask({n: classes}))
    for i in range(3):
        single = attend("sdpa", q[i : i + 1], k[i : i + 1], v[i : i + 1], heads, 0.5, FocusMask({n: classes[i : i + 1]}))
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("size, grids", [(64, [(16, 16), (8, 8), (4, 4)]), (512, [(64, 64), (32, 32), (16, 16)])])
def test_pixel_mask_downsampling_is_nearest_top_left(size, grids):
    gen = torch.Generator().manual_seed(size)
    mask = torch.rand(2, size, size, generator=gen) < 0.5
    focus = FocusMask.from_pixel_mask(mask, grids)
    for h, w in grids:
        ref = F.interpolate(mask[:, None].float(), size=(h, w), mode="nearest").flatten(1) > 0.5
        assert torch.equal(focus.token_classes(h * w), ref)


def _attention(dim=32, heads=4, seed=0):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(seed)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False, out_bias=True).eval()


def _processor(dim, rank, kernel, seed=1):
    torch.manual_seed(seed)
    proc = FocusAttnProcessor(dim, rank, kernel=kernel)
    with torch.no_grad():
        for p in proc.parameters():
            p.normal_(0, 0.3)
    return proc


def test_processor_sdpa_matches_naive_and_the_official_formulation():
    dim, rank, size = 32, 4, 32
    attn = _attention(dim)
    x = torch.randn(1, 64, dim)  # an 8x8 token grid
    pixel = torch.zeros(1, size, size, dtype=torch.bool)
    pixel[:, 8:20, 4:30] = True
    focus = FocusMask.from_pixel_mask(pixel, [(8, 8)])

    fast = _processor(dim, rank, "sdpa")
    naive = _processor(dim, rank, "naive")
    official = OfficialMaskedProcessor(dim, rank, "cpu", torch.float32)
    for name in ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora"):
        getattr(official, name).load_state_dict(getattr(fast, name).state_dict())
    official.masks = official_mask_table(pixel[:, None].float(), 8)  # keyed by token count

    with torch.no_grad():
        out_fast = fast(attn, x, focus_mask=focus)
        out_naive = naive(attn, x, focus_mask=focus)
        out_official = official(attn, x)
        out_uniform = fast(attn, x, focus_mask=FocusMask.from_pixel_mask(torch.ones_like(pixel), [(8, 8)]))
    torch.testing.assert_close(out_fast, out_naive, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out_fast, out_official, atol=2e-5, rtol=1e-5)
    assert (out_fast - out_uniform).abs().max() > 1e-3  # the mask matters


def test_processor_batches_tiles_with_their_own_masks():
    dim = 32
    attn = _attention(dim, seed=3)
    proc = _processor(dim, 4, "sdpa", seed=4)
    x = torch.randn(2, 64, dim)
    pixel = torch.rand(2, 32, 32) < 0.5
    with torch.no_grad():
        both = proc(attn, x, focus_mask=FocusMask.from_pixel_mask(pixel, [(8, 8)]))
        for i in range(2):
            one = proc(attn, x[i : i + 1], focus_mask=FocusMask.from_pixel_mask(pixel[i : i + 1], [(8, 8)]))
            torch.testing.assert_close(both[i : i + 1], one, atol=1e-5, rtol=1e-5)


def test_plain_processor_matches_diffusers_sdpa_and_accepts_focus_mask():
    from diffusers.models.attention_processor import AttnProcessor2_0

    attn = _attention(32, seed=5)
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        ref = AttnProcessor2_0()(attn, x)
        ours = PlainAttnProcessor("sdpa")(attn, x, focus_mask=None)
        naive = PlainAttnProcessor("naive")(attn, x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(naive, ref, atol=1e-5, rtol=1e-5)


def test_bf16_sdpa_with_mask_runs_on_cpu():
    gen = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(1, 256, 64, generator=gen) for _ in range(3))
    classes = torch.rand(1, 256, generator=gen) < 0.5
    ref = naive_attention(q, k, v, 2, 32**-0.5, classes)
    low = attend("sdpa", q.bfloat16(), k.bfloat16(), v.bfloat16(), 2, 32**-0.5, FocusMask({256: classes}))
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.05


def test_additive_bias_for_xformers_is_aligned_and_blocks_other_classes():
    classes = torch.tensor([[True, False, True, True, False]])
    bias = FocusMask({5: classes}).additive_bias(5, torch.float16)
    assert bias.shape == (1, 1, 5, 5) and bias.stride(-2) % 8 == 0 and bias.stride(-1) == 1
    same = classes[0][:, None] == classes[0][None, :]
    assert torch.all(bias[0, 0][same] == 0)
    assert torch.all(torch.isinf(bias[0, 0][~same]))


def test_unknown_token_count_is_a_clear_error():
    with pytest.raises(ValueError, match="no focus mask for a layer with 7 tokens"):
        FocusMask({4: torch.ones(1, 4, dtype=torch.bool)}).token_classes(7)
