"""Degradation pipeline: contract of degrade(), each stage's measurable effect, the CLI, bad input."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from conftest import REPO, textured
from magicbokeh import degradation as dg
from magicbokeh.cli import main
from magicbokeh.errors import MagicBokehError
from magicbokeh.images import load_photo, save_png


def on_8bit_grid(img: np.ndarray) -> bool:
    return bool(np.all(np.abs(img * 255.0 - np.rint(img * 255.0)) < 1e-3))


def second_moment(k: np.ndarray) -> float:
    """Mean squared distance (px^2) of a 2-D spread from its centroid."""
    k = k / k.sum()
    yy, xx = np.indices(k.shape)
    cy, cx = (k * yy).sum(), (k * xx).sum()
    return float((k * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum())


# --- degrade(): contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", dg.PRESETS)
def test_same_seed_same_output_different_seeds_differ(preset):
    img = textured(48, 64, seed=1)
    a = dg.degrade(img, preset=preset, seed=3)
    assert np.array_equal(a, dg.degrade(img, preset=preset, seed=3))
    assert np.array_equal(a, dg.degrade(img, preset=preset, seed=np.random.default_rng(3)))
    assert not np.array_equal(a, dg.degrade(img, preset=preset, seed=4))


@pytest.mark.parametrize("preset,scale,shape", [
    ("realesrgan", 4.0, (50, 70)), ("realesrgan", 1.0, (24, 20)), ("realesrgan", 2.5, (41, 33)),
    ("zoom", 3.0, (48, 37)), ("zoom", 1.0, (16, 16)),
])
def test_output_dtype_size_range_and_8bit_grid(preset, scale, shape):
    img = textured(*shape, seed=2)
    out = dg.degrade(img, preset=preset, scale=scale, seed=0)
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert on_8bit_grid(out)
    assert not np.array_equal(out, img)


def test_uint8_input_matches_float_input():
    u8 = (textured(40, 40, seed=5) * 255).round().astype(np.uint8)
    assert np.array_equal(dg.degrade(u8, seed=9), dg.degrade(u8.astype(np.float32) / 255, seed=9))


def test_realesrgan_low_quality_size_over_many_draws():
    # Many seeds visit every branch (sinc or not, up/down/keep, both final orders) at awkward sizes.
    img = textured(45, 38, seed=3)
    for seed in range(25):
        lq = dg.degrade_realesrgan(img, np.random.default_rng(seed), 4.0)
        assert lq.shape == (11, 9, 3) and on_8bit_grid(lq) and lq.min() >= 0 and lq.max() <= 1


def test_pipeline_uses_its_params():
    # Every stage neutralised (delta blur, no resize, zero noise, JPEG 100, no sinc): nearly the input.
    neutral = dg.RealESRGANParams(
        kernel_prob=(1, 0, 0, 0, 0, 0), blur_sigma=(0.2, 0.2), blur_sigma2=(0.2, 0.2), sinc_prob=0, sinc_prob2=0,
        resize_prob=(0, 0, 1), resize_prob2=(0, 0, 1), gaussian_noise_prob=1, gaussian_noise_prob2=1,
        noise_range=(0, 0), noise_range2=(0, 0), jpeg_range=(100, 100), jpeg_range2=(100, 100), final_sinc_prob=0,
    )
    img = dg.quantize_8bit(textured(48, 48, seed=8))
    out = dg.degrade_realesrgan(img, np.random.default_rng(0), 1.0, neutral)
    assert np.abs(out - img).mean() < 4 / 255  # two JPEG-100 passes with 4:2:0 chroma
    noisy = dg.degrade(img, scale=1, seed=0, params=dataclasses.replace(neutral, noise_range=(20, 20)))
    assert (noisy - img).std() > 10 / 255
    sharp_zoom = dg.ZoomParams(blur_sigma_range=(0.05, 0.05), noise_range=(0, 0), jpeg_range=(100, 100))
    assert np.abs(dg.degrade(img, preset="zoom", scale=1, seed=0, params=sharp_zoom) - img).mean() < 4 / 255


def test_params_hold_the_published_values():
    # domain-notes §4.2-4.4 (RealESRNet x4plus training config)
    p = dg.RealESRGANParams()
    assert p.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03) and math.isclose(sum(p.kernel_prob), 1.0)
    assert (p.blur_sigma, p.blur_sigma2, p.betag_range, p.betap_range) == ((0.2, 3), (0.2, 1.5), (0.5, 4), (1, 2))
    assert (p.resize_prob, p.resize_prob2) == ((0.2, 0.7, 0.1), (0.3, 0.4, 0.3))
    assert (p.resize_range, p.resize_range2) == ((0.15, 1.5), (0.3, 1.2))
    assert (p.noise_range, p.noise_range2) == ((1, 30), (1, 25))
    assert (p.poisson_scale_range, p.poisson_scale_range2) == ((0.05, 3), (0.05, 2.5))
    assert p.jpeg_range == p.jpeg_range2 == (30, 95) and p.sinc_prob == p.sinc_prob2 == 0.1
    assert (p.second_blur_prob, p.final_sinc_prob, p.resize_then_jpeg_prob) == (0.8, 0.8, 0.5)
    assert p.gray_noise_prob == p.gray_noise_prob2 == 0.4 and p.gaussian_noise_prob == p.gaussian_noise_prob2 == 0.5
    with pytest.raises(AttributeError):
        p.sinc_prob = 0.5  # frozen


# --- kernels --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", dg.KERNEL_TYPES + ("sinc",))
def test_kernels_are_21x21_and_sum_to_one(kind):
    rng = np.random.default_rng(0)
    for _ in range(5):
        k = dg.random_blur_kernel(rng, (0.2, 3.0), kind=kind)
        assert k.shape == (21, 21) and k.dtype == np.float32
        assert k.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.unravel_index(np.argmax(k), k.shape) == (10, 10)
        if kind != "sinc":
            assert k.min() >= 0
        if kind == "sinc" or not kind.endswith("aniso"):
            # rotationally symmetric on the grid: invariant under transpose and flips (90° rotations)
            np.testing.assert_allclose(k, k.T, atol=1e-7)
            np.testing.assert_allclose(k, k[::-1, :], atol=1e-7)
            np.testing.assert_allclose(k, np.rot90(k), atol=1e-7)


def test_anisotropic_kernel_is_elongated_along_its_rotation():
    k = dg.shaped_kernel(21, 3.0, 1.2, math.pi / 2)  # long axis rotated from x onto y
    rows, cols = k.sum(axis=1), k.sum(axis=0)
    ax = np.arange(21) - 10
    assert (rows * ax**2).sum() == pytest.approx(9.0, rel=0.05)
    assert (cols * ax**2).sum() == pytest.approx(1.44, rel=0.05)


def test_kernel_family_probabilities_and_sampling_details():
    rng = np.random.default_rng(123)
    specs = [dg.draw_kernel_spec(rng, (0.2, 3.0)) for _ in range(4000)]
    counts = Counter(s.kind for s in specs)
    assert counts["sinc"] / 4000 == pytest.approx(0.1, abs=0.02)
    non_sinc = 4000 - counts["sinc"]
    for kind, p in zip(dg.KERNEL_TYPES, dg.RealESRGANParams().kernel_prob):
        assert counts[kind] / non_sinc == pytest.approx(p, abs=0.03), kind
    assert {s.size for s in specs} == set(range(7, 22, 2))
    for s in specs:
        if s.kind == "sinc":
            lo = math.pi / 3 if s.size < 13 else math.pi / 5
            assert lo <= s.cutoff <= math.pi
        elif not s.kind.endswith("aniso"):
            assert s.sigma_y == s.sigma_x and s.theta == 0.0
        else:
            assert 0.2 <= s.sigma_y <= 3.0 and -math.pi <= s.theta <= math.pi
    plateau = [s.beta for s in specs if s.kind.startswith("plateau")]
    assert np.mean(np.array(plateau) == 1.0) == pytest.approx(0.5, abs=0.1)  # half the draws from U(1, 1)
    gen = np.array([s.beta for s in specs if s.kind.startswith("generalized")])
    assert np.mean(gen < 1.0) == pytest.approx(0.5, abs=0.1) and gen.min() >= 0.5 and gen.max() <= 4.0


def j1_series(x: float) -> float:
    """J1 from its power series in exact rational arithmetic (no cancellation error)."""
    from fractions import Fraction

    half = Fraction(x) / 2
    return float(sum(Fraction((-1) ** m) * half ** (2 * m + 1) / (math.factorial(m) * math.factorial(m + 1))
                     for m in range(120)))


def test_bessel_j1_matches_the_power_series():
    x = np.array([0.0, 1.0, 2.0, 7.5, 10.0, 25.0, 40.0])
    np.testing.assert_allclose(dg.bessel_j1(x), [j1_series(v) for v in x], atol=1e-10)
    assert abs(dg.bessel_j1(np.array(3.8317059702075123))) < 1e-10  # first zero (tabulated)


@pytest.mark.parametrize("cutoff", [math.pi / 4, math.pi / 2])
def test_sinc_kernel_passes_below_and_stops_above_its_cutoff(cutoff):
    k = dg.sinc_kernel(cutoff, 21)
    response = np.abs(np.fft.fft2(k, (128, 128)))
    f = np.fft.fftfreq(128) * 2 * math.pi
    radius = np.hypot(*np.meshgrid(f, f))
    assert response[radius < 0.6 * cutoff].mean() > 0.9
    assert response[radius > 1.4 * cutoff].mean() < 0.05
    assert dg.sinc_kernel(cutoff, 13, pad_to=21).shape == (21, 21)


def test_blur_widens_a_point():
    img = np.zeros((41, 41, 3), np.float32)
    img[20, 20] = 1.0
    out = dg.apply_kernel(img, dg.shaped_kernel(21, 2.0))
    assert second_moment(out[..., 0]) == pytest.approx(2 * 2.0**2, rel=0.05)  # 2 sigma^2 for a 2-D Gaussian
    wider = dg.apply_kernel(img, dg.shaped_kernel(21, 3.0))
    assert second_moment(wider[..., 1]) > second_moment(out[..., 1]) > 0.5


# --- resize, noise, JPEG, USM ---------------------------------------------------------------------


def test_random_resize_follows_probabilities_and_base_size():
    img = np.full((40, 60, 3), 0.5, np.float32)
    rng = np.random.default_rng(0)
    for _ in range(10):
        down = dg.random_resize(img, rng, prob=(0, 1, 0), scale_range=(0.15, 1.5))
        assert 6 <= down.shape[0] <= 40 and 9 <= down.shape[1] <= 60
        assert abs(down.shape[1] / down.shape[0] - 1.5) < 0.2  # one factor for both axes
        up = dg.random_resize(img, rng, prob=(1, 0, 0), scale_range=(0.15, 1.5))
        assert 40 <= up.shape[0] <= 60 and 60 <= up.shape[1] <= 90
        keep = dg.random_resize(img, rng, prob=(0, 0, 1), scale_range=(0.3, 1.2), base_hw=(10.0, 15.0))
        assert keep.shape == (10, 15, 3)
        np.testing.assert_allclose(keep, 0.5, atol=1e-5)  # every mode keeps a flat image flat


def test_gaussian_noise_has_the_requested_sigma_and_gray_option():
    flat = np.full((128, 128, 3), 0.5, np.float32)
    rng = np.random.default_rng(1)
    for sigma in (5.0, 20.0):
        noisy = dg.add_gaussian_noise(flat, sigma, False, rng)
        assert (noisy - flat).std() * 255 == pytest.approx(sigma, rel=0.05)
        assert abs(np.corrcoef((noisy[..., 0] - 0.5).ravel(), (noisy[..., 2] - 0.5).ravel())[0, 1]) < 0.05
    gray = dg.add_gaussian_noise(flat, 10.0, True, rng)
    assert np.array_equal(gray[..., 0], gray[..., 2]) and gray.std() > 0.03


def test_poisson_noise_scales_with_distinct_values():
    rng = np.random.default_rng(2)
    # One distinct value -> vals = 1: noise = scale * (Poisson(v) - v), variance scale^2 * v.
    flat = np.full((128, 128, 3), 0.5, np.float32)
    out = dg.add_poisson_noise(flat, 0.1, False, rng)
    assert (out - flat).std() == pytest.approx(0.1 * math.sqrt(0.5), rel=0.05)
    # 256 distinct values -> vals = 256: variance scale^2 * v / 256.
    ramp = np.repeat(np.tile(np.arange(256, dtype=np.float32) / 255, (64, 1))[..., None], 3, axis=2)
    out = dg.add_poisson_noise(ramp, 2.0, False, rng)
    assert np.mean((out - ramp)[:, 8:-8] ** 2) == pytest.approx(4.0 * ramp[:, 8:-8].mean() / 256, rel=0.1)
    gray = dg.add_poisson_noise(ramp, 2.0, True, rng)
    assert np.allclose(gray[..., 0] - ramp[..., 0], gray[..., 1] - ramp[..., 1], atol=1e-6)


def test_jpeg_adds_8x8_blocking_and_keeps_channel_order():
    x = np.linspace(0.2, 0.8, 64, dtype=np.float32)
    xx, yy = np.meshgrid(x, x)
    img = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)
    out = dg.jpeg(img, 30)
    step = np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))
    assert step[7::8].mean() > 1.5 * np.delete(step, np.s_[7::8]).mean()
    assert on_8bit_grid(out) and out.dtype == np.float32
    assert np.array_equal(dg.jpeg(img, 30.4), out)  # real quality rounded
    red = np.zeros((16, 16, 3), np.float32)
    red[..., 0] = 0.9
    np.testing.assert_allclose(dg.jpeg(red, 95).mean(axis=(0, 1)), [0.9, 0, 0], atol=0.03)
    with pytest.raises(MagicBokehError, match=r"\[1, 100\]"):
        dg.jpeg(img, 0)


def test_unsharp_mask_overshoots_edges_and_sharpen_option_changes_output():
    img = np.full((16, 256, 3), 0.3, np.float32)
    img[:, 128:] = 0.7
    usm = dg.unsharp_mask(img)  # blur sigma 15.5 px (OpenCV's default for a 101-pixel kernel)
    assert usm[:, 129].mean() > 0.72 and usm[:, 126].mean() < 0.28  # overshoot on both sides of the edge
    np.testing.assert_allclose(usm[:, :20], 0.3, atol=1e-5)  # flat areas far from the edge untouched
    tex = textured(48, 48, seed=4)
    assert not np.array_equal(dg.degrade(tex, seed=1, sharpen=True), dg.degrade(tex, seed=1))


def test_zoom_loses_fine_detail():
    checker = np.indices((64, 64)).sum(axis=0) // 2 % 2  # 2-pixel squares
    img = np.repeat(checker[..., None], 3, axis=2).astype(np.float32) * 0.8 + 0.1
    for preset in dg.PRESETS:
        out = dg.degrade(img, preset=preset, scale=4, seed=0)
        assert out.var() < 0.1 * img.var(), preset
        assert out.mean() == pytest.approx(img.mean(), abs=0.1)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("image,kwargs,message", [
    (np.zeros((40, 40), np.float32), {}, r"\(H, W, 3\)"),
    (np.zeros((40, 40, 4), np.float32), {}, "RGBA"),
    (np.full((40, 40, 3), np.nan, np.float32), {}, "NaN"),
    (np.full((40, 40, 3), 255.0, np.float32), {}, r"\[0, 1\].*255"),
    (np.zeros((40, 40, 3), np.int32), {}, "uint8"),
    (np.zeros((40, 40, 3), np.float32), {"preset": "bsrgan"}, "realesrgan, zoom"),
    (np.zeros((40, 40, 3), np.float32), {"scale": 0.5}, r"\[1, 16\]"),
    (np.zeros((40, 40, 3), np.float32), {"scale": 32}, r"\[1, 16\]"),
    (np.zeros((40, 40, 3), np.float32), {"scale": "x"}, "number"),
    (np.zeros((20, 40, 3), np.float32), {"scale": 4}, "at least 32 px"),
    (np.zeros((40, 40, 3), np.float32), {"seed": -1}, "non-negative"),
    (np.zeros((40, 40, 3), np.float32), {"seed": 1.5}, "seed"),
    (np.zeros((40, 40, 3), np.float32), {"preset": "zoom", "params": dg.RealESRGANParams()}, "ZoomParams"),
])
def test_bad_input_raises_a_clear_error(image, kwargs, message):
    with pytest.raises(MagicBokehError, match=message):
        dg.degrade(image, **kwargs)


# --- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def photo(tmp_path):
    return save_png(tmp_path / "in.png", textured(40, 56, seed=6))


def test_cli_same_seed_gives_identical_files(tmp_path, photo, capsys):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert main(["degrade", str(photo), "-o", str(a), "--seed", "7"]) == 0
    assert main(["degrade", str(photo), "-o", str(b), "--seed", "7"]) == 0
    assert main(["degrade", str(photo), "-o", str(c), "--seed", "8", "--preset", "zoom", "--scale", "2"]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert load_photo(a).size == load_photo(c).size == (56, 40)
    assert "wrote" in capsys.readouterr().out


def test_cli_prints_a_drawn_seed_that_reproduces_the_run(tmp_path, photo, capsys):
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    assert main(["degrade", str(photo), "-o", str(first), "-q"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("seed: ")
    seed = int(out[0].split(": ")[1])
    assert 0 <= seed < 2**32
    assert main(["degrade", str(photo), "-o", str(again), "--seed", str(seed)]) == 0
    assert first.read_bytes() == again.read_bytes()


@pytest.mark.parametrize("extra,message", [
    (["--scale", "0.5"], "scale"),
    (["--scale", "8"], "at least 64 px"),
    (["--seed", "-3"], "non-negative"),
    (["-o", "out.jpg"], ".png"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, photo, capsys, extra, message):
    args = ["degrade", str(photo), "-o", str(tmp_path / "o.png"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and message in err


def test_cli_missing_file_and_unknown_preset(tmp_path, capsys):
    assert main(["degrade", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["degrade", "x.png", "-o", "o.png", "--preset", "bsrgan"])
    assert exc.value.code == 2


def test_cli_choices_mirror_the_library():
    from magicbokeh.commands import degrade as command

    assert command._PRESETS == dg.PRESETS and command._MAX_SCALE == dg.MAX_SCALE


def test_module_does_not_import_torch():
    code = "import sys, magicbokeh.degradation, magicbokeh.commands.degrade; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120).returncode == 0


@pytest.mark.slow  # importing torch takes seconds on a small machine; the check itself is instant
def test_resize_and_blur_match_upstream_torch_ops():
    """The OpenCV calls reproduce torch's interpolate (no antialias) and reflect-padded conv2d."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    img = textured(40, 56, seed=9)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    for mode, size in [("bilinear", (14, 20)), ("bicubic", (14, 20)), ("bilinear", (52, 72)),
                       ("bicubic", (52, 72)), ("area", (20, 28)), ("area", (10, 14))]:
        extra = {} if mode == "area" else {"align_corners": False, "antialias": False}
        ref = F.interpolate(t, size=size, mode=mode, **extra)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(dg.resize(img, size, mode), ref, atol=1e-5, err_msg=f"{mode} {size}")
    kernel = dg.shaped_kernel(21, 2.5, 1.0, 0.6)
    padded = F.pad(t, (10, 10, 10, 10), mode="reflect")
    ref = F.conv2d(padded, torch.from_numpy(kernel)[None, None].repeat(3, 1, 1, 1), groups=3)[0].permute(1, 2, 0)
    np.testing.assert_allclose(dg.apply_kernel(img, kernel), ref.numpy(), atol=1e-5)
