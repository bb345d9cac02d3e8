"""Pinned ZeroGPU duration request: exact seconds for known photos (docs/spaces.md).

The rule: ``ceil(10 s margin + 2 s depth + tiles x 0.1 s)``; a re-render of the same photo at the
same size drops the depth term (depth cached) and counts tiles at 75 % (latents cached). Tiles are
the official 512 px tiles at stride 256 (``official-model.md`` §1.5), counted here by the closed
form ``rows = floor((H - 512) / 256) + 1 + [H % 256 != 0]``. Expected values are literal numbers.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from magicbokeh import zerogpu


class _Photo:
    """A decoded photo as far as the duration needs it: its size."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.size = (width, height)


def _job(width: int, height: int, *, max_side=None, depth="auto", depth_cached=False, latents_cached=False):
    """A GpuJob for a photo of this size, whichever way GpuJob takes its request."""
    names = {f.name for f in dataclasses.fields(zerogpu.GpuJob)}
    flags = dict(depth_cached=depth_cached, latents_cached=latents_cached)
    if "request" in names:
        from magicbokeh.request import RenderRequest

        req = RenderRequest(image=_Photo(width, height), depth=depth, max_side=max_side)
        return zerogpu.GpuJob(request=req, **flags)
    return zerogpu.GpuJob(photo=_Photo(width, height), depth=depth, max_side=max_side, **flags)


def _tiles(h: int, w: int) -> int:
    def per_axis(n: int) -> int:
        n = max(n, 512)
        return (n - 512) // 256 + 1 + (1 if n % 256 else 0)

    return per_axis(h) * per_axis(w)


@pytest.fixture(autouse=True)
def _default_tile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAGICBOKEH_GPU_TILE_SECONDS", raising=False)


def test_tile_counts_of_the_documented_sizes() -> None:
    assert [_tiles(1024, 1562), _tiles(3024, 4032), _tiles(512, 512), _tiles(600, 800)] == [18, 165, 1, 6]
    assert _job(1562, 1024).tiles == 18
    assert _job(4032, 3024).tiles == 165
    assert _job(4032, 3024, max_side=1600).tiles == 24  # 1600 x 1200


@pytest.mark.parametrize(("size", "kwargs", "seconds"), [
    ((1562, 1024), {}, 14),                                  # 10 + 2 + 1.8 = 13.8
    ((4032, 3024), {}, 29),                                  # 10 + 2 + 16.5
    ((4032, 3024), {"max_side": 1600}, 15),                  # 10 + 2 + 2.4
    ((512, 512), {}, 13),                                    # 10 + 2 + 0.1
    ((4032, 3024), {"latents_cached": True}, 25),            # 10 + 2 + 165 x 0.075 = 24.375
    ((4032, 3024), {"depth_cached": True}, 27),              # 10 + 16.5
    ((4032, 3024), {"depth_cached": True, "latents_cached": True}, 23),  # 10 + 12.375
    ((4032, 3024), {"depth": "approximate"}, 27),            # no depth network, no depth term
    ((1562, 1024), {"latents_cached": True, "depth_cached": True}, 12),  # 10 + 1.35
])
def test_duration_in_whole_seconds(size, kwargs, seconds) -> None:
    assert zerogpu.gpu_duration(_job(*size, **kwargs)) == seconds


def test_duration_follows_the_tile_time_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGICBOKEH_GPU_TILE_SECONDS", "0.25")
    assert zerogpu.gpu_duration(_job(4032, 3024)) == 54  # 10 + 2 + 41.25
    assert zerogpu.gpu_duration(_job(4032, 3024, latents_cached=True)) == 43  # 10 + 2 + 30.9375
    for w, h in [(700, 900), (2000, 1500), (3000, 700)]:
        expected = math.ceil(10 + 2 + _tiles(h, w) * 0.25)
        assert zerogpu.gpu_duration(_job(w, h)) == expected, (w, h)
