"""Pinned processing size: the long side capped at ``max_side``, each side rounded to whole pixels,
and K in input pixels scaled by processed / input long side (literal expected sizes)."""

from __future__ import annotations

import pytest

from magicbokeh.processing import k_for_processing, plan


@pytest.mark.parametrize(("size", "max_side", "expected"), [
    ((4032, 3024), 1600, (1600, 1200)),
    ((3000, 2003), 1000, (1000, 668)),   # 667.67 rounds up (not truncated to 667)
    ((2003, 3000), 1000, (668, 1000)),
    ((3000, 2001), 1000, (1000, 667)),
    ((1000, 700), 1600, (1000, 700)),    # never upscaled
    ((5000, 60), 1000, (1000, 16)),      # at least 16 px per side
])
def test_processed_size(size, max_side, expected) -> None:
    assert plan(*size, max_side).processed_size == expected


def test_k_in_input_pixels_scales_with_the_long_side() -> None:
    p = plan(4000, 3000, 1000)
    assert k_for_processing(20.0, p, "input") == pytest.approx(5.0)
    assert k_for_processing(20.0, p, "processed") == 20.0
    assert k_for_processing(20.0, plan(4000, 3000, None), "input") == 20.0
