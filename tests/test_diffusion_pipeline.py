"""End-to-end rendering through ``MagicBokehBackend`` on the tiny model (CPU, fp32)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusion_fixtures import (  # noqa: F401  (fixtures)
    SD21_SCHEDULER,
    TILE,
    diffusion_cache,
    scene,
    tiny_assets,
    tiny_options,
    torch_single_thread,
)

from magicbokeh.backends import get_backend
from magicbokeh.diffusion.backend import MagicBokehBackend, parse_options
from magicbokeh.diffusion.pipeline import MagicBokehPipeline, tile_noise
from magicbokeh.errors import MagicBokehError
from magicbokeh.focus import defocus_map, in_focus_mask, quantise_disparity_8bit

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture
def backend(diffusion_cache):
    return MagicBokehBackend()


def test_render_matches_the_official_algorithm(tiny_assets, backend):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from magicbokeh.diffusion.checkpoint import read_checkpoint
    from magicbokeh.diffusion.reference import build_official_style, official_adain, official_render

    img, disp = scene(100, 150)
    focus, k = 0.9, 24.0
    out = backend.render(img, disp, focus, k, options=tiny_options(tiny_assets, color_fix="none"), image_key="a")
    out_adain = backend.render(img, disp, focus, k, options=tiny_options(tiny_assets), image_key="a")

    ref_model = build_official_style(
        UNet2DConditionModel.from_pretrained(tiny_assets.base_dir, subfolder="unet"),
        AutoencoderKL.from_pretrained(tiny_assets.base_dir, subfolder="vae"),
        read_checkpoint(tiny_assets.ckpt_path),
        SD21_SCHEDULER,
    )
    defocus = defocus_map(quantise_disparity_8bit(disp), focus, k)  # 0.9 is not on the 8-bit grid
    defocus_q = defocus_map(quantise_disparity_8bit(disp), float(quantise_disparity_8bit(np.float32([[focus]]))[0, 0]), k)
    assert not np.array_equal(defocus, defocus_q)
    ref = official_render(ref_model, img, defocus_q, lambda i, j: tile_noise(42, i, j, (4, 16, 16))[None], tile=TILE)
    assert out.image.shape == img.shape and out.image.dtype == np.float32
    np.testing.assert_allclose(out.image * 2 - 1, ref, atol=1e-4)
    np.testing.assert_allclose(out_adain.image, official_adain(ref * 0.5 + 0.5, img), atol=1e-4)
    assert any("cpu fp32" in m for m in out.messages)
    assert set(out.timings) >= {"load", "encode", "denoise", "decode", "total"}


@pytest.fixture
def pipe(tiny_assets, diffusion_cache):
    return MagicBokehBackend().pipeline(tiny_options(tiny_assets))


def _inputs(h, w, focus=0.9, k=20.0, seed=0):
    img, disp = scene(h, w, seed)
    defocus = defocus_map(disp, focus, k)
    return img, defocus, in_focus_mask(defocus)


def test_batched_tiles_match_one_by_one(pipe):
    img, dfc, msk = _inputs(100, 150)
    one = pipe.render(img, dfc, msk, tile_batch=1)
    five = pipe.render(img, dfc, msk, tile_batch=5)
    # At most 5 per pass, split evenly: 12 tiles run as 4 + 4 + 4 (three passes either way).
    assert one.stats["tiles"] == 12 and five.stats["batch"] == 4
    np.testing.assert_allclose(five.image, one.image, atol=2e-5)
    ragged = pipe.render(img, dfc, msk, tile_batch=8)  # 6 + 6
    np.testing.assert_allclose(ragged.image, one.image, atol=2e-5)


@pytest.mark.parametrize("tiles,most,expected", [(18, 8, 6), (18, 4, 4), (7, 4, 4), (12, 5, 4), (1, 8, 1), (16, 8, 8)])
def test_balanced_batches_never_exceed_the_limit_nor_add_passes(tiles, most, expected):
    import math

    from magicbokeh.diffusion.pipeline import balanced_batch

    got = balanced_batch(tiles, most)
    assert got == expected and got <= most
    assert math.ceil(tiles / got) == math.ceil(tiles / most)


def test_cached_latents_rerender_equals_full_render(pipe, tiny_assets):
    img, dfc16, msk16 = _inputs(100, 150, k=16)
    _, dfc28, msk28 = _inputs(100, 150, k=28)
    first = pipe.render(img, dfc16, msk16, image_key="photo-1")
    assert first.stats["encoded"] == 12 and first.stats["cached"] == 0
    again = pipe.render(img, dfc28, msk28, image_key="photo-1")
    assert again.stats["encoded"] == 0 and again.stats["cached"] == 12
    fresh = MagicBokehPipeline(pipe.model).render(img, dfc28, msk28)  # no cache at all
    np.testing.assert_array_equal(again.image, fresh.image)
    assert np.abs(again.image - first.image).max() > 1e-2  # K really changed the result
    other_seed = pipe.render(img, dfc28, msk28, image_key="photo-1", seed=7)
    assert other_seed.stats["encoded"] == 12  # latents are per seed


def test_seed_determines_the_output(pipe):
    img, dfc, msk = _inputs(64, 64)
    a = pipe.render(img, dfc, msk, seed=3).image
    b = pipe.render(img, dfc, msk, seed=3).image
    c = pipe.render(img, dfc, msk, seed=4).image
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_focus_mask_reaches_the_attention(pipe):
    img, dfc, msk = _inputs(64, 96)
    assert 0.05 < msk.mean() < 0.95
    masked = pipe.render(img, dfc, msk, color_fix="none").image
    unmasked = pipe.render(img, dfc, np.ones_like(msk), color_fix="none").image  # same condition
    assert np.abs(masked - unmasked).max() > 1e-3


def test_small_images_are_padded_and_cropped(pipe):
    img, dfc, msk = _inputs(40, 50)
    out = pipe.render(img, dfc, msk)
    assert out.image.shape == (40, 50, 3) and out.stats["tiles"] == 1
    assert np.isfinite(out.image).all() and 0.0 <= out.image.min() and out.image.max() <= 1.0


def test_k0_is_restoration_only(tiny_assets, backend):
    img, disp = scene(64, 80)
    opts = tiny_options(tiny_assets)
    near = backend.render(img, disp, 0.9, 0.0, options=opts, image_key="r")
    far = backend.render(img, disp, 0.1, 0.0, options=opts, image_key="r")
    restored = backend.restore(img, options=opts, image_key="r")
    np.testing.assert_array_equal(near.image, far.image)  # focus is irrelevant without blur
    np.testing.assert_array_equal(near.image, restored.image)
    assert "restoration only" in near.messages[0]


def test_colour_fix_options(pipe):
    img, dfc, msk = _inputs(64, 96)
    outs = {fix: pipe.render(img, dfc, msk, color_fix=fix).image for fix in ("adain", "wavelet", "none")}
    for out in outs.values():
        assert out.shape == img.shape and 0.0 <= out.min() and out.max() <= 1.0

    def stats_error(out):  # channel mean/std distance to the input photo
        o, i = out.reshape(-1, 3), img.reshape(-1, 3)
        return max(np.abs(o.mean(0) - i.mean(0)).max(), np.abs(o.std(0) - i.std(0)).max())

    # the clamp to [0, 1] after AdaIN costs a little on the tiny model's heavy-tailed output
    assert stats_error(outs["adain"]) < 0.5 * stats_error(outs["none"])
    assert np.abs(outs["wavelet"] - outs["adain"]).max() > 1e-3


def test_adain_matches_channel_statistics():
    from magicbokeh.diffusion.color_fix import adain_color_fix

    gen = torch.Generator().manual_seed(1)
    target = 0.5 + 0.1 * torch.rand(3, 40, 50, generator=gen)  # bounded: no clamping
    source = torch.rand(3, 40, 50, generator=gen) * torch.tensor([0.2, 0.4, 0.6])[:, None, None] + 0.2
    out = adain_color_fix(target, source)
    torch.testing.assert_close(out.mean(dim=(1, 2)), source.mean(dim=(1, 2)), atol=1e-5, rtol=0)
    # the official eps (1e-5 on both variances) shifts the std slightly
    torch.testing.assert_close(out.flatten(1).std(1), source.flatten(1).std(1), atol=2e-3, rtol=0)
    corr = torch.corrcoef(torch.stack([out[0].flatten(), target[0].flatten()]))[0, 1]
    assert corr > 0.999  # per-channel affine map of the output


def test_wavelet_keeps_input_colours_and_output_detail():
    from magicbokeh.diffusion.color_fix import wavelet_color_fix

    gen = torch.Generator().manual_seed(0)
    source = torch.full((3, 80, 80), 0.3) + torch.tensor([0.0, 0.2, 0.4])[:, None, None]
    detail = 0.05 * torch.randn(3, 80, 80, generator=gen)
    target = 0.6 + detail
    out = wavelet_color_fix(target, source)
    torch.testing.assert_close(out.mean(dim=(1, 2)), source.mean(dim=(1, 2)), atol=0.01, rtol=0)
    centred = out - out.mean(dim=(1, 2), keepdim=True)
    assert torch.corrcoef(torch.stack([centred.flatten(), detail.flatten()]))[0, 1] > 0.95


def test_progress_reports_every_tile_with_an_eta(tiny_assets, backend):
    img, disp = scene(100, 150)
    calls = []
    backend.render(img, disp, 0.5, 16, options=tiny_options(tiny_assets, tile_batch=4), image_key="p",
                   progress=lambda f, s: calls.append((f, s)))  # fmt: skip
    tiles = [(f, s) for f, s in calls if s.startswith("MagicBokeh tile")]
    assert [round(f, 3) for f, _ in tiles] == [round(x / 12, 3) for x in (4, 8, 12)]
    assert all("ETA" in s for _, s in tiles) and tiles[-1][1].startswith("MagicBokeh tile 12/12")


def test_bad_options_and_inputs_are_clear_errors(tiny_assets, backend):
    img, disp = scene(64, 64)
    with pytest.raises(MagicBokehError, match="dtype"):
        parse_options({"dtype": "int8"})
    with pytest.raises(MagicBokehError, match="tile_batch"):
        parse_options({"tile_batch": -2})
    with pytest.raises(MagicBokehError, match="colour fix|color_fix"):
        parse_options({"color_fix": "sepia"})
    with pytest.raises(MagicBokehError, match="K=40"):
        backend.render(img, disp, 0.5, 40, options=tiny_options(tiny_assets), image_key="x")
    with pytest.raises(MagicBokehError, match="disparity is 32x64"):
        backend.render(img, disp[:, :32], 0.5, 8, options=tiny_options(tiny_assets), image_key="x")
    with pytest.raises(MagicBokehError, match="checkpoint file not found"):
        backend.render(img, disp, 0.5, 8, options=tiny_options(tiny_assets, checkpoint="./nope.pkl"), image_key="x")
    assert parse_options({"aperture": "polygon", "blades": 6}).seed == 42  # other backends' keys ignored


def test_registry_returns_this_backend():
    assert isinstance(get_backend("magicbokeh"), MagicBokehBackend)
    assert set(MagicBokehBackend.OPTIONS) >= {"base", "checkpoint", "seed", "tile_batch", "dtype", "device",
                                             "color_fix", "compile", "quantize_disparity", "focal_range"}  # fmt: skip


def test_availability_with_local_weights(tiny_assets, monkeypatch):
    monkeypatch.delenv("MAGICBOKEH_BASE", raising=False)
    monkeypatch.delenv("MAGICBOKEH_CHECKPOINT", raising=False)
    opts = {"base": str(tiny_assets.base_dir), "checkpoint": str(tiny_assets.ckpt_path)}
    assert MagicBokehBackend().availability(opts).ok  # offline, but local paths given
    assert not MagicBokehBackend().availability().ok  # the Hub defaults are not cached here
    monkeypatch.setenv("MAGICBOKEH_BASE", str(tiny_assets.base_dir))
    monkeypatch.setenv("MAGICBOKEH_CHECKPOINT", str(tiny_assets.ckpt_path))
    status = MagicBokehBackend().availability()
    assert status.ok and "weights ready" in status.reason and "CPU" in status.reason
    monkeypatch.setenv("MAGICBOKEH_CHECKPOINT", str(tiny_assets.ckpt_path.parent / "gone" / "lora.pkl"))
    status = MagicBokehBackend().availability()
    assert not status.ok and "checkpoint file not found" in status.reason


def test_availability_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("MAGICBOKEH_BASE", raising=False)
    monkeypatch.delenv("MAGICBOKEH_CHECKPOINT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    status = MagicBokehBackend().availability()
    assert not status.ok
    assert "HF_HUB_OFFLINE is set" in status.reason and "LinxiaoShi/Magicbokeh (lora.pkl)" in status.reason
    assert "Manojb/stable-diffusion-2-1-base (unet/config.json" in status.reason
    assert "--checkpoint PATH" in status.reason


def test_importing_the_backend_does_not_import_torch():
    code = (
        "import sys; from magicbokeh.diffusion.backend import MagicBokehBackend as B; "
        "assert B.OPTIONS and 'torch' not in sys.modules and 'diffusers' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('torch', 'diffusers')))[:5]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_out_of_memory_halves_the_tile_batch_then_gives_a_clear_error(pipe, monkeypatch):
    img, dfc, msk = _inputs(64, 160)  # 1 x 4 tiles
    real = pipe._run_tiles
    seen = []

    def flaky(chunk, *args):
        seen.append(len(chunk))
        if len(chunk) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(chunk, *args)

    monkeypatch.setattr(pipe, "_run_tiles", flaky)
    out = pipe.render(img, dfc, msk, tile_batch=4)
    assert seen == [4, 2, 1, 1, 1, 1] and out.stats["batch"] == 1
    np.testing.assert_allclose(out.image, pipe.render(img, dfc, msk, tile_batch=1).image, atol=1e-6)

    def always(chunk, *args):
        raise RuntimeError("CUDA out of memory.")

    monkeypatch.setattr(pipe, "_run_tiles", always)
    with pytest.raises(MagicBokehError, match="out of cpu memory even with one 64 px tile"):
        pipe.render(img, dfc, msk, tile_batch=1)


def test_availability_online_without_cache_announces_the_download(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    import magicbokeh.hub

    monkeypatch.delenv("MAGICBOKEH_BASE", raising=False)
    monkeypatch.delenv("MAGICBOKEH_CHECKPOINT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(magicbokeh.hub, "hub_reachable", lambda *a, **k: True)
    status = MagicBokehBackend().availability()
    assert status.ok and "first use downloads ~4.8 GB" in status.reason and "CPU" in status.reason
    monkeypatch.setattr(magicbokeh.hub, "hub_reachable", lambda *a, **k: False)
    status = MagicBokehBackend().availability()
    assert not status.ok and "unreachable" in status.reason
