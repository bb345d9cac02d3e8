"""ZeroGPU support with a fake ``spaces`` module: one GPU call per GPU request, durations,
the classical path never asks for a GPU, honest failures, and nothing changes without spaces."""

from __future__ import annotations

import sys
import threading
import time
import types
from dataclasses import dataclass

import numpy as np
import pytest

from conftest import textured
from magicbokeh import backends, warmup, zerogpu
from magicbokeh.backends import Availability, Backend, BackendResult
from magicbokeh.errors import MagicBokehError
from magicbokeh.notes import is_warning
from magicbokeh.pipeline import Focus, RenderRequest, RenderSettings, render

MAGICBOKEH_SPEC = "magicbokeh.diffusion.backend:MagicBokehBackend"


class FakeSpaces(types.ModuleType):
    """Records ``spaces.GPU`` decorations, calls and the durations it would request."""

    def __init__(self, error: BaseException | None = None):
        super().__init__("spaces")
        self.decorated: list = []
        self.calls: list = []
        self.durations: list[int] = []
        self.error = error

    def GPU(self, task=None, *, duration=None, size=None):  # noqa: N802 - the real name
        def wrap(fn):
            self.decorated.append((fn, duration, size))

            def gpu_call(*args, **kwargs):
                self.calls.append(fn)
                self.durations.append(duration(*args, **kwargs) if callable(duration) else duration)
                if self.error is not None:
                    raise self.error
                return fn(*args, **kwargs)

            return gpu_call

        return wrap(task) if callable(task) else wrap


class FakeDiffusion(Backend):
    """A stand-in for the diffusion backend: darkens the photo, records its options."""

    name = "magicbokeh"
    label = "fake diffusion"

    def __init__(self):
        self.options: list[dict] = []

    def availability(self, options=None):
        return Availability(True, "fake")

    def render(self, image, disparity, focus_disparity, k, *, options, image_key, progress=None):
        self.options.append(dict(options))
        return BackendResult(np.asarray(image) * 0.5)


class SpacesError(Exception):
    """Shaped like the gr.Error that spaces raises (a title and a message)."""

    def __init__(self, title: str, message: str):
        super().__init__(message)
        self.title, self.message = title, message


@pytest.fixture
def fake_backend():
    backend = FakeDiffusion()
    backends.register_backend("magicbokeh", lambda: backend)
    zerogpu._RECENT.clear()
    yield backend
    backends.register_backend("magicbokeh", MAGICBOKEH_SPEC)
    zerogpu._RECENT.clear()


@pytest.fixture
def fake_spaces(monkeypatch):
    spaces = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    return spaces


@dataclass(frozen=True)
class _Size:
    """Stands in for a decoded photo where only its size matters (GPU durations)."""

    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def photo(h=96, w=128, seed=0):
    img = textured(h, w, seed=seed)
    return img, np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))


def test_gpu_request_makes_exactly_one_gpu_call(fake_spaces, fake_backend):
    img, disp = photo()
    settings = RenderSettings(k=16, backend="magicbokeh")
    res = zerogpu.render_request(RenderRequest(img, depth=disp, focus=Focus.point(10, 10), settings=settings))
    assert len(fake_spaces.calls) == 1 and fake_spaces.calls[0] is zerogpu._run_job
    assert np.allclose(res.image, img * 0.5) and res.backend == "magicbokeh"
    assert len(fake_backend.options) == 1  # depth and diffusion inside that one call
    assert res.messages[-1].startswith("No GPU here") and "not a ZeroGPU Space" in res.messages[-1]
    zerogpu.render_request(RenderRequest(img, depth=disp, settings=settings))
    assert len(fake_spaces.calls) == 2
    assert len(fake_spaces.decorated) == 1  # decorated once, with the dynamic duration
    assert fake_spaces.decorated[0][1] is zerogpu.gpu_duration


def test_classical_backend_never_requests_a_gpu(fake_spaces, fake_backend):
    img, disp = photo()
    res = zerogpu.render_request(RenderRequest(img, depth=disp,
                                               settings=RenderSettings(k=16, backend="classical")))
    assert fake_spaces.calls == [] and fake_backend.options == []
    expected = render(img, depth=disp, settings=RenderSettings(k=16, backend="classical"))
    assert np.array_equal(res.image, expected.image)


def test_duration_grows_with_tiles_and_shrinks_for_cached_rerenders(fake_spaces, fake_backend):
    small = zerogpu.gpu_duration(zerogpu.GpuJob(RenderRequest(_Size(512, 512))))
    large_job = zerogpu.GpuJob(RenderRequest(_Size(4000, 3000)))
    assert large_job.tiles == 165  # official-model.md §1.5: a 12 MP photo
    large = zerogpu.gpu_duration(large_job)
    assert 10 <= small < 20 and small < large
    assert large >= 165 * zerogpu.GPU_TILE_SECONDS_DEFAULT and large <= zerogpu.gpu_budget_seconds()
    capped = zerogpu.gpu_duration(zerogpu.GpuJob(RenderRequest(_Size(4000, 3000), max_side=1600)))
    assert capped < large
    cached = zerogpu.gpu_duration(zerogpu.GpuJob(RenderRequest(_Size(4000, 3000)), depth_cached=True,
                                                 latents_cached=True))
    assert cached < large
    # the same photo rendered twice: the second call asks for less time
    img, disp = photo(600, 1100)
    settings = RenderSettings(k=16, backend="magicbokeh")
    zerogpu.render_request(RenderRequest(img, depth="auto", settings=settings))  # offline: approximate depth
    zerogpu.render_request(RenderRequest(img, depth="auto", settings=RenderSettings(k=8, backend="magicbokeh")))
    first, second = fake_spaces.durations
    assert second < first


def test_too_long_for_the_budget_says_so_before_asking(fake_spaces, fake_backend, monkeypatch):
    monkeypatch.setenv("MAGICBOKEH_GPU_BUDGET_S", "15")
    img, disp = photo(600, 1100)  # 3 x 5 tiles: 10 s margin + 15 x 0.1 s + 2 s depth > 15 s? no
    monkeypatch.setenv("MAGICBOKEH_GPU_TILE_SECONDS", "1.0")  # now 10 + 2 + 15 s > 15 s
    with pytest.raises(zerogpu.GpuBudgetExceeded, match="smaller processing size .* classical backend"):
        zerogpu.render_request(RenderRequest(img, settings=RenderSettings(k=16, backend="magicbokeh")))
    assert fake_spaces.calls == []
    # a smaller processing size fits
    zerogpu.render_request(RenderRequest(img, depth=disp, settings=RenderSettings(k=16, backend="magicbokeh"),
                                         max_side=512))
    assert len(fake_spaces.calls) == 1


def test_quota_exhausted_offers_classical_or_falls_back(monkeypatch, fake_backend):
    spaces = FakeSpaces(error=SpacesError("ZeroGPU quota exceeded", "You have exceeded your free ZeroGPU quota"))
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    img, disp = photo()
    settings = RenderSettings(k=16, backend="magicbokeh")
    with pytest.raises(zerogpu.GpuUnavailable) as info:
        zerogpu.render_request(RenderRequest(img, depth=disp, settings=settings))
    text = str(info.value)
    assert "ZeroGPU quota exceeded" in text and "classical backend" in text
    assert isinstance(info.value, MagicBokehError)
    res = zerogpu.render_request(RenderRequest(img, depth=disp, settings=settings), fallback_to_classical=True)
    assert res.backend == "classical" and "classical backend instead" in res.messages[0]
    assert is_warning(res.messages[0]) and not is_warning(res.messages[-1])
    assert not np.allclose(res.image, img * 0.5)


def test_bad_input_inside_the_gpu_call_keeps_our_message(fake_spaces, fake_backend):
    img, disp = photo()
    with pytest.raises(MagicBokehError, match="outside the 128x96 image") as info:
        zerogpu.render_request(RenderRequest(img, depth=disp, focus=Focus.point(500, 5),
                               settings=RenderSettings(backend="magicbokeh")))
    assert not isinstance(info.value, zerogpu.GpuUnavailable)
    with pytest.raises(MagicBokehError, match="not a supported image"):  # decoded before any GPU call
        zerogpu.render_request(RenderRequest(b"garbage", settings=RenderSettings(backend="magicbokeh")))
    assert len(fake_spaces.calls) == 1


def test_on_zerogpu_options_are_pinned_and_classical_depth_stays_on_cpu(monkeypatch, fake_spaces, fake_backend):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    img, disp = photo()
    res = zerogpu.render_request(RenderRequest(img, depth=disp, settings=RenderSettings(backend="magicbokeh")),
                                 lambda f, s: None)  # a closure: dropped, not a pickling error
    assert fake_backend.options[0]["device"] == "cuda" and fake_backend.options[0]["attention"] == "sdpa"
    assert res.messages[-1].startswith("Ran on ZeroGPU") and "requested" in res.messages[-1]
    calls = []
    monkeypatch.setattr("magicbokeh.pipeline.render", lambda *a, **k: calls.append(k) or "ok")
    zerogpu.render_request(RenderRequest(img, depth=disp, settings=RenderSettings(backend="classical")))
    assert calls[0]["depth_device"] == "cpu" and len(fake_spaces.calls) == 1


def test_without_spaces_nothing_changes(monkeypatch, fake_backend):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert zerogpu.spaces_module() is None and not zerogpu.zero_gpu_active()
    assert zerogpu.gpu_task() is zerogpu._run_job
    img, disp = photo()
    for backend in ("classical", "magicbokeh"):
        settings = RenderSettings(k=12, backend=backend)
        a = zerogpu.render_request(RenderRequest(img, depth=disp, focus=Focus.point(30, 40), settings=settings))
        b = render(img, depth=disp, focus=Focus.point(30, 40), settings=settings)
        assert np.array_equal(a.image, b.image)
    assert "device" not in fake_backend.options[0]  # no ZeroGPU pinning off ZeroGPU


def test_gpu_failure_detection():
    assert zerogpu.is_gpu_failure(SpacesError("ZeroGPU worker error", "GPU task aborted"))
    assert zerogpu.is_gpu_failure(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not zerogpu.is_gpu_failure(MagicBokehError("ZeroGPU words in a bad-input message"))
    assert not zerogpu.is_gpu_failure(ValueError("something else"))


def test_common_batch_sizes_cover_the_default_photo():
    sizes = warmup.common_batch_sizes(1600, 8)
    assert 6 in sizes  # 1562x1024-like photos: 18 tiles as 6 + 6 + 6
    assert all(1 <= s <= 8 for s in sizes) and sizes == sorted(set(sizes))


def test_warm_up_runs_the_real_pipeline(tmp_path_factory, monkeypatch, tmp_path):
    pytest.importorskip("diffusers")
    from diffusion_fixtures import get_tiny_assets, tiny_options
    from magicbokeh.diffusion.loading import clear_loaded_models, load_magicbokeh

    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path / "cache"))
    assets = get_tiny_assets(tmp_path_factory)
    opts = tiny_options(assets)
    clear_loaded_models()
    try:
        model = load_magicbokeh(opts["base"], opts["checkpoint"], device="cpu", dtype="fp32", attention="sdpa")
        seconds = warmup.warm_up(model, [1, 2])
        assert set(seconds) == {1, 2} and all(s > 0 for s in seconds.values())
        # and a real GPU-path request (through the fake spaces) renders with it
        spaces = FakeSpaces()
        monkeypatch.setitem(sys.modules, "spaces", spaces)
        img, disp = photo(64, 96)
        settings = RenderSettings(k=16, backend="magicbokeh", backend_options=opts)
        res = zerogpu.render_request(RenderRequest(img, depth=disp, settings=settings))
        assert len(spaces.calls) == 1 and res.image.shape == img.shape
        assert any("tile(s) of 64 px" in m for m in res.messages)
    finally:
        clear_loaded_models()


def test_gpu_work_runs_one_request_at_a_time_classical_in_parallel(fake_spaces, fake_backend, monkeypatch):
    active, peak, lock = [0], [0], threading.Lock()
    original = FakeDiffusion.render

    def slow(self, *args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FakeDiffusion, "render", slow)
    img, disp = photo(32, 48)
    settings = RenderSettings(backend="magicbokeh")
    threads = [threading.Thread(target=zerogpu.render_request,
                                args=(RenderRequest(img, depth=disp, settings=settings),)) for _ in range(3)]
    for t in threads:
        t.start()
    # while the GPU slot is busy, a classical render is not blocked by it
    time.sleep(0.05)
    assert zerogpu.GPU_SLOT.locked()
    res = zerogpu.render_request(RenderRequest(img, depth=disp, settings=RenderSettings(backend="classical")))
    assert res.backend == "classical" and zerogpu.GPU_SLOT.locked()
    for t in threads:
        t.join()
    assert peak[0] == 1 and len(fake_spaces.calls) == 3


def test_zerogpu_refuses_gpu_sweeps_only(monkeypatch, fake_spaces):
    zerogpu.check_allowed("sweep", "magicbokeh")  # off ZeroGPU: every request is allowed
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    with pytest.raises(MagicBokehError, match="sweeps with the two-stage backend need a dedicated GPU"):
        zerogpu.check_allowed("sweep", "two-stage")
    zerogpu.check_allowed("sweep", "classical")
    zerogpu.check_allowed("render", "magicbokeh")


def test_common_batch_sizes_are_the_pipelines_passes():
    """The warm-up covers the passes a render runs: the fewest passes of at most 8 tiles, each as
    small as that allows (found by search here), then the remainder."""
    from magicbokeh.diffusion.tiling import tile_count

    sizes = set(warmup.common_batch_sizes(1600, 8))
    for w, h in ((1600, 1200), (1200, 1600), (1600, 900), (1600, 1600), (1200, 900)):
        n = tile_count(h, w)
        fewest = min(-(-n // b) for b in range(1, 9))
        batch = min(b for b in range(1, 9) if -(-n // b) == fewest)
        passes = [min(batch, n - start) for start in range(0, n, batch)]
        assert set(passes) <= sizes, (w, h, passes, sizes)
