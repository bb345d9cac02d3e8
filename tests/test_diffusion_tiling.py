"""Official 512/256 tiling and linear-ramp blending (spec §1.5)."""

from __future__ import annotations

import numpy as np
import pytest

from magicbokeh.diffusion.tiling import (
    pad_to_tile,
    ramp_profile,
    tile_count,
    tile_positions,
    tile_starts,
    tile_weight,
    weight_sum,
)


@pytest.mark.parametrize(
    "hw, tiles",
    [((1024, 1562), 18), ((1024, 1564), 18), ((3024, 4032), 165), ((512, 512), 1), ((600, 800), 6)],
)
def test_tile_counts_match_the_spec_table(hw, tiles):
    h, w = hw
    assert tile_count(h, w) == tiles
    assert len(tile_positions(h, w)) == tiles


def test_edge_tiles_are_flush_with_the_far_edges():
    # 600 = 512 + 88: one regular row and a bottom row at 600 - 512; 800 % 256 != 0 likewise.
    assert tile_starts(600) == [0, 88]
    assert tile_starts(800) == [0, 256, 288]
    assert tile_starts(1024) == [0, 256, 512]  # a multiple of the stride gets no extra row
    assert tile_positions(600, 800)[0] == (0, 0) and tile_positions(600, 800)[-1] == (88, 288)


@pytest.mark.parametrize("tile, h, w", [(512, 600, 800), (512, 1024, 1562), (512, 513, 1100), (64, 100, 150), (64, 64, 97)])
def test_weights_cover_every_pixel_with_sum_at_least_one(tile, h, w):
    total = weight_sum(h, w, tile)
    assert total.shape == (h, w)
    assert total.min() >= 1.0 - 1e-6
    # every tile lies inside the image
    for top, left in tile_positions(h, w, tile):
        assert 0 <= top <= h - tile and 0 <= left <= w - tile


def test_ramp_profiles_follow_the_official_rule():
    first = ramp_profile(0, 1024)
    assert first[0] == 1.0 and first[255] == 1.0 and first[-1] == 0.0  # fades out, linspace(1, 0)
    np.testing.assert_allclose(first[256:], np.linspace(1, 0, 256), atol=1e-7)
    middle = ramp_profile(256, 1024)
    assert middle[0] == 0.0 and middle[-1] == 0.0
    last = ramp_profile(512, 1024)
    assert last[0] == 0.0 and last[-1] == 1.0 and last[300] == 1.0
    only = ramp_profile(0, 512)
    assert np.all(only == 1.0)
    w = tile_weight(256, 0, 1024, 512)
    np.testing.assert_allclose(w, np.outer(middle, only))


def test_small_images_are_reflect_padded_to_one_tile():
    rng = np.random.default_rng(0)
    img = rng.random((40, 70, 3)).astype(np.float32)
    padded = pad_to_tile(img, 64)
    assert padded.shape == (64, 70, 3)
    np.testing.assert_array_equal(padded[:40], img)
    np.testing.assert_array_equal(padded[40], img[38])  # reflect: row 40 mirrors row 38
    big = rng.random((64, 80)).astype(np.float32)
    assert pad_to_tile(big, 64) is big
    tiny = pad_to_tile(rng.random((16, 16)).astype(np.float32), 64)  # pad larger than the size
    assert tiny.shape == (64, 64)
    assert tile_count(40, 70, 64) == len(tile_positions(64, 70, 64))
