"""Pinned Real-ESRGAN degradation: every published number, and each stage drawing from its own fields.

References are independent of the code under test:

* ``PUBLISHED`` is the table of ``../shared/reference/domain-notes.md`` §4 (xinntao/Real-ESRGAN
  ``train_realesrnet_x4plus.yml``), written out here field by field.
* The order of random draws is a naive re-implementation in this file (:func:`_expected_draws`) of
  the pipeline §4.2-4.5 describes. A :class:`RecordingRng` stands in for the numpy Generator, logs
  every draw (its range or probabilities) and answers the bare ``uniform()`` coin flips with a fixed
  value, so each branch is decided by the probability field the stage should read. Parameter sets
  give every field a value of its own (and unlike its default), so a stage that reads another
  stage's field, or a literal, draws from the wrong range and the sequence differs.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import pytest

from conftest import textured
from magicbokeh.degradation import (
    KERNEL_TYPES,
    RealESRGANParams,
    degrade,
    degrade_realesrgan,
    draw_kernel_spec,
)

PI = math.pi
#: domain-notes.md §4.2-4.4, every field of RealESRGANParams.
PUBLISHED: dict[str, object] = {
    "kernel_types": ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"),
    "kernel_prob": (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    "kernel_size_range": (7, 21),
    "kernel_pad_to": 21,
    "rotation_range": (-PI, PI),
    "sinc_cutoff_small": (PI / 3, PI),
    "sinc_cutoff_large": (PI / 5, PI),
    "sinc_small_below": 13,
    "blur_sigma": (0.2, 3.0),
    "betag_range": (0.5, 4.0),
    "betap_range": (1.0, 2.0),
    "sinc_prob": 0.1,
    "resize_prob": (0.2, 0.7, 0.1),
    "resize_range": (0.15, 1.5),
    "gaussian_noise_prob": 0.5,
    "noise_range": (1.0, 30.0),
    "poisson_scale_range": (0.05, 3.0),
    "gray_noise_prob": 0.4,
    "jpeg_range": (30.0, 95.0),
    "second_blur_prob": 0.8,
    "blur_sigma2": (0.2, 1.5),
    "betag_range2": (0.5, 4.0),
    "betap_range2": (1.0, 2.0),
    "sinc_prob2": 0.1,
    "resize_prob2": (0.3, 0.4, 0.3),
    "resize_range2": (0.3, 1.2),
    "gaussian_noise_prob2": 0.5,
    "noise_range2": (1.0, 25.0),
    "poisson_scale_range2": (0.05, 2.5),
    "gray_noise_prob2": 0.4,
    "jpeg_range2": (30.0, 95.0),
    "final_sinc_prob": 0.8,
    "final_sinc_cutoff": (PI / 3, PI),
    "resize_then_jpeg_prob": 0.5,
    "resize_modes": ("area", "bilinear", "bicubic"),
}


def test_every_field_holds_the_published_value() -> None:
    params = RealESRGANParams()
    names = {f.name for f in dataclasses.fields(params)}
    assert names == set(PUBLISHED), "a field was added or removed: pin its published value here"
    for name, value in PUBLISHED.items():
        got = getattr(params, name)
        if name == "resize_modes":
            assert set(got) == set(value), name
        elif isinstance(value, tuple) and not isinstance(value[0], str):
            assert tuple(got) == pytest.approx(value, rel=1e-12, abs=1e-12), name
        else:
            assert got == value, name


def test_kernel_draw_defaults_are_the_published_stage_one_values() -> None:
    defaults = {k: p.default for k, p in inspect.signature(draw_kernel_spec).parameters.items()
                if p.default is not inspect.Parameter.empty}
    for name, field in [("betag_range", "betag_range"), ("betap_range", "betap_range"),
                        ("sinc_prob", "sinc_prob"), ("kernel_prob", "kernel_prob"),
                        ("size_range", "kernel_size_range"), ("rotation_range", "rotation_range"),
                        ("sinc_cutoff_small", "sinc_cutoff_small"), ("sinc_cutoff_large", "sinc_cutoff_large"),
                        ("sinc_small_below", "sinc_small_below"), ("pad_to", "kernel_pad_to")]:
        assert defaults[name] == pytest.approx(PUBLISHED[field]), name
    assert tuple(defaults["kernel_types"]) == PUBLISHED["kernel_types"] == KERNEL_TYPES


class RecordingRng:
    """A numpy Generator stand-in: logs every draw; bare ``uniform()`` coin flips return ``coin``."""

    def __init__(self, seed: int, coin: float):
        self._rng = np.random.default_rng(seed)
        self.coin = coin
        self.log: list[tuple] = []
        self.values: list[float] = []  # values of the ranged uniform draws, in order

    def uniform(self, low=None, high=None, size=None):
        if low is None and high is None and size is None:
            self.log.append(("coin",))
            return self.coin
        value = self._rng.uniform(low, high)
        self.log.append(("range", (round(float(low), 9), round(float(high), 9))))
        self.values.append(float(value))
        return value

    def choice(self, a, p=None, **kwargs):
        n = a if isinstance(a, (int, np.integer)) else len(a)
        self.log.append(("choice", int(n), None if p is None else tuple(np.round(np.asarray(p, float), 9))))
        return self._rng.choice(a, p=p, **kwargs)

    def standard_normal(self, size=None, dtype=np.float64):
        self.log.append(("gaussian", int(size[-1])))
        self.shapes.append(tuple(size))
        return self._rng.standard_normal(size, dtype=dtype)

    def poisson(self, lam, size=None):
        self.log.append(("poisson", int(np.shape(lam)[-1])))
        self.shapes.append(tuple(np.shape(lam)))
        return self._rng.poisson(lam, size)

    shapes: list


def _r(pair) -> tuple:
    return ("range", (round(float(pair[0]), 9), round(float(pair[1]), 9)))


def _p(prob) -> tuple:
    p = np.asarray(prob, float)
    return tuple(np.round(p / p.sum(), 9))


def _expected_draws(p: RealESRGANParams, coin: float) -> list[tuple]:
    """The draws of domain-notes §4 in order, written independently of magicbokeh.degradation.

    Requires a single kernel size, a one-hot kernel_prob and one-hot resize probabilities."""
    ev: list[tuple] = []
    size = p.kernel_size_range[0]
    kind = p.kernel_types[int(np.argmax(p.kernel_prob))]
    n_sizes = len(range(p.kernel_size_range[0] | 1, p.kernel_size_range[1] + 1, 2))

    def kernel(sigma, betag, betap, sinc_prob):
        ev.append(("choice", n_sizes, None))  # odd kernel size
        ev.append(("coin",))  # sinc?
        if coin < sinc_prob:
            ev.append(_r(p.sinc_cutoff_small if size < p.sinc_small_below else p.sinc_cutoff_large))
            return
        ev.append(("choice", len(p.kernel_types), _p(p.kernel_prob)))
        ev.append(_r(sigma))
        if kind.endswith("aniso"):
            ev.extend([_r(sigma), _r(p.rotation_range)])
        if kind.startswith(("generalized", "plateau")):
            beta = betag if kind.startswith("generalized") else betap
            ev.extend([("coin",), _r((beta[0], 1.0)) if coin < 0.5 else _r((1.0, beta[1]))])

    def resize(prob, scale_range):
        ev.append(("choice", 3, _p(prob)))
        way = int(np.argmax(prob))
        if way == 0:
            ev.append(_r((1.0, scale_range[1])))
        elif way == 1:
            ev.append(_r((scale_range[0], 1.0)))
        ev.append(("choice", len(p.resize_modes), None))

    def noise(gauss_prob, sigma_range, poisson_range, gray_prob):
        ev.append(("coin",))
        gaussian = coin < gauss_prob
        ev.extend([_r(sigma_range if gaussian else poisson_range), ("coin",),
                   ("gaussian" if gaussian else "poisson", 1 if coin < gray_prob else 3)])

    kernel(p.blur_sigma, p.betag_range, p.betap_range, p.sinc_prob)
    kernel(p.blur_sigma2, p.betag_range2, p.betap_range2, p.sinc_prob2)
    ev.append(("coin",))  # final sinc?
    if coin < p.final_sinc_prob:
        ev.extend([_r(p.final_sinc_cutoff), ("choice", n_sizes, None)])
    # Stage 1: blur, resize, noise, JPEG.
    resize(p.resize_prob, p.resize_range)
    noise(p.gaussian_noise_prob, p.noise_range, p.poisson_scale_range, p.gray_noise_prob)
    ev.append(_r(p.jpeg_range))
    # Stage 2: blur with a probability, resize, noise; then the final step in either order.
    ev.append(("coin",))
    resize(p.resize_prob2, p.resize_range2)
    noise(p.gaussian_noise_prob2, p.noise_range2, p.poisson_scale_range2, p.gray_noise_prob2)
    ev.append(("coin",))
    if coin < p.resize_then_jpeg_prob:
        ev.extend([("choice", len(p.resize_modes), None), _r(p.jpeg_range2)])
    else:
        ev.extend([_r(p.jpeg_range2), ("choice", len(p.resize_modes), None)])
    return ev


def _one_hot(i: int, n: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(n))


def _params(flip: bool, kind: str, size: int) -> RealESRGANParams:
    """Every field distinct from its default and from the other stage's. Probabilities lie either
    side of the coins (0.45 / 0.55): ``flip`` swaps which stage takes which branch."""
    hi, lo = (0.7, 0.3) if not flip else (0.3, 0.7)
    return RealESRGANParams(
        kernel_prob=_one_hot(KERNEL_TYPES.index(kind), 6), kernel_size_range=(size, size), kernel_pad_to=23,
        rotation_range=(-2.9, 2.8), sinc_cutoff_small=(1.1, 3.0), sinc_cutoff_large=(0.7, 2.9),
        sinc_small_below=11,
        blur_sigma=(0.3, 2.7), betag_range=(0.6, 3.7), betap_range=(0.9, 1.8), sinc_prob=hi,
        resize_prob=_one_hot(1 if not flip else 0, 3), resize_range=(0.55, 1.4), gaussian_noise_prob=lo,
        noise_range=(2.0, 28.0), poisson_scale_range=(0.06, 2.9), gray_noise_prob=hi, jpeg_range=(31.0, 94.0),
        second_blur_prob=hi, blur_sigma2=(0.25, 1.4), betag_range2=(0.65, 3.6), betap_range2=(0.95, 1.7),
        sinc_prob2=lo, resize_prob2=_one_hot(0 if not flip else 1, 3), resize_range2=(0.62, 1.15),
        gaussian_noise_prob2=hi, noise_range2=(3.0, 24.0), poisson_scale_range2=(0.07, 2.4),
        gray_noise_prob2=lo, jpeg_range2=(33.0, 92.0), final_sinc_prob=hi, final_sinc_cutoff=(1.2, 3.1),
        resize_then_jpeg_prob=lo, resize_modes=("bicubic", "area"),
    )


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("coin", [0.45, 0.55])
@pytest.mark.parametrize("kinds", [("generalized_aniso", 11), ("plateau_iso", 9)])
def test_each_stage_draws_from_its_own_fields(flip: bool, coin: float, kinds: tuple[str, int]) -> None:
    kind, size = kinds
    params = _params(flip, kind, size)
    img = textured(64, 48, seed=1)
    rng = RecordingRng(seed=7, coin=coin)
    rng.shapes = []
    out = degrade_realesrgan(img, rng, 2.0, params)
    assert out.shape == (32, 24, 3)
    assert rng.log == _expected_draws(params, coin)

    # Stage 1 resizes relative to the input, stage 2 relative to the target (input / scale): the
    # noise is drawn at the resized size, floor(base * factor).
    value_of = {}  # log index of each ranged draw -> its value
    ranged = [i for i, e in enumerate(rng.log) if e[0] == "range"]
    value_of.update(zip(ranged, rng.values))
    resize_draws = [value_of[i + 1] for i, e in enumerate(rng.log) if e[0] == "choice" and e[1] == 3]
    f1, f2 = resize_draws
    assert rng.shapes[0][:2] == (int(64 * f1), int(48 * f1))
    assert rng.shapes[1][:2] == (int(32 * f2), int(24 * f2))


def test_second_blur_probability_decides_the_second_blur() -> None:
    img = textured(64, 64, seed=2)
    base = _params(False, "iso", 9)
    outs = []
    for prob in (0.5, 0.6):  # the coin is 0.55: no second blur, then a second blur
        rng = RecordingRng(seed=3, coin=0.55)
        rng.shapes = []
        params = dataclasses.replace(base, second_blur_prob=prob, blur_sigma2=(1.4, 1.5))
        outs.append(degrade_realesrgan(img, rng, 2.0, params))
    # Same draws, so the only difference is the blur: the blurred one has less detail.
    assert not np.array_equal(outs[0], outs[1])
    assert np.abs(np.diff(outs[1], axis=1)).mean() < np.abs(np.diff(outs[0], axis=1)).mean()


@pytest.mark.parametrize("size", [7, 9, 11, 13, 15, 21])
def test_sinc_cutoff_range_switches_at_kernel_size_13(size: int) -> None:
    rng = RecordingRng(seed=size, coin=0.0)
    rng.shapes = []
    spec = draw_kernel_spec(rng, (0.2, 3.0), kind="sinc", size_range=(size, size))
    assert spec.size == size
    expected = (PI / 3, PI) if size < 13 else (PI / 5, PI)
    assert rng.log[-1] == _r(expected)
    assert expected[0] <= spec.cutoff <= expected[1]


def test_default_pipeline_draws_from_the_published_table() -> None:
    """degrade() with no params: every ranged draw is one of the published ranges (or the up/down
    halves of a resize range, or a beta half), over many seeds."""
    allowed = set()
    for name, value in PUBLISHED.items():
        if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], str):
            allowed.add(_r(value)[1])
            allowed.add(_r((value[0], 1.0))[1])
            allowed.add(_r((1.0, value[1]))[1])
    seen = set()
    img = textured(32, 32, seed=4)
    for seed in range(40):
        rng = RecordingRng(seed=seed, coin=float(np.random.default_rng(seed + 100).uniform()))
        rng.shapes = []
        degrade_realesrgan(img, rng, 2.0)
        seen |= {e[1] for e in rng.log if e[0] == "range"}
    assert seen <= allowed, seen - allowed
    # The stage-specific noise and JPEG ranges were all exercised.
    for name in ("noise_range", "noise_range2", "poisson_scale_range", "poisson_scale_range2", "jpeg_range",
                 "final_sinc_cutoff", "blur_sigma", "blur_sigma2"):
        assert _r(PUBLISHED[name])[1] in seen, name
    assert degrade(img, seed=0).shape == img.shape


# ------------------------------------------------------------------------------------------------
# The digital-zoom preset (docs/degradation.md: blur sigma [0.3, 1] px, noise [1, 5]/255, JPEG [75, 90])


def test_zoom_preset_holds_its_documented_values_and_draws_from_them() -> None:
    from magicbokeh.degradation import ZoomParams, degrade_zoom

    p = ZoomParams()
    assert (tuple(p.blur_sigma_range), tuple(p.noise_range), p.gray_noise_prob, tuple(p.jpeg_range),
            p.downscale_mode) == ((0.3, 1.0), (1.0, 5.0), 0.0, (75.0, 90.0), "area")
    custom = ZoomParams(blur_sigma_range=(0.4, 0.9), noise_range=(2.0, 4.0), gray_noise_prob=0.6,
                        jpeg_range=(80.0, 85.0))
    for coin, channels in ((0.5, 1), (0.7, 3)):  # gray when the coin is below 0.6
        rng = RecordingRng(seed=1, coin=coin)
        rng.shapes = []
        out = degrade_zoom(textured(64, 48, seed=2), rng, 2.0, custom)
        assert out.shape == (32, 24, 3)
        assert rng.log == [_r((0.4, 0.9)), _r((2.0, 4.0)), ("coin",), ("gaussian", channels), _r((80.0, 85.0))]
        assert rng.shapes == [(32, 24, channels)]
