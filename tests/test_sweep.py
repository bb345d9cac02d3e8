"""Aperture and focus sweeps: the core (magicbokeh.sweep) and `python -m magicbokeh sweep`, in-process."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from magicbokeh import depth as depth_mod
from magicbokeh import sweep as sweep_mod
from magicbokeh.cli import main
from magicbokeh.errors import MagicBokehError
from magicbokeh.images import save_png
from magicbokeh.notes import is_warning
from magicbokeh.pipeline import Focus, RenderRequest, RenderSettings, render

SIZE = 96
BANDS = 4  # horizontal bands of constant disparity, top = nearest


def _noise(seed: int = 0) -> np.ndarray:
    """Per-pixel noise: every bit of blur shows in the Laplacian."""
    return np.random.default_rng(seed).uniform(0.1, 0.9, (SIZE, SIZE, 3)).astype(np.float32)


def _bands() -> np.ndarray:
    """Disparity 1, 2/3, 1/3, 0 in four horizontal bands (top nearest)."""
    rows = np.repeat(np.linspace(1.0, 0.0, BANDS, dtype=np.float32), SIZE // BANDS)
    return np.repeat(rows[:, None], SIZE, axis=1)


def _sharpness(rgb: np.ndarray, rows: slice) -> float:
    """Laplacian variance of the gray image inside a band (edges trimmed)."""
    gray = np.asarray(rgb, np.float32).mean(axis=2)
    if gray.max() > 1.5:
        gray = gray / 255.0
    return float(cv2.Laplacian(gray, cv2.CV_32F)[rows, 8:-8].var())


def _band_rows(i: int) -> slice:
    h = SIZE // BANDS
    return slice(i * h + 6, (i + 1) * h - 6)


@pytest.fixture
def scene(tmp_path):
    """A photo and its disparity map on disk (16-bit PNG, exact band values)."""
    photo = save_png(tmp_path / "photo.png", _noise())
    disparity = save_png(tmp_path / "disp.png", _bands(), bits=16)
    return photo, disparity


def _cli(*args: str) -> int:
    return main(["sweep", *args, "-q"])


# ---------------------------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------------------------


def test_aperture_sweep_blurs_the_background_more_with_every_frame(scene):
    photo, disparity = scene
    request = RenderRequest(str(photo), depth=str(disparity), focus=Focus.point(48, 10))  # the nearest band
    result = sweep_mod.render_sweep(request, kind="aperture", frames=6, k_max=24)
    assert len(result.frames) == 6
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in result.frames)
    assert result.values == pytest.approx([0, 4.8, 9.6, 14.4, 19.2, 24])
    assert result.k == result.values and result.focus_disparity == pytest.approx([1.0] * 6, abs=1e-4)
    # K = 0 is the photo itself; the far band loses detail strictly with every step of K.
    np.testing.assert_array_equal(result.frames[0], np.asarray(Image.open(photo).convert("RGB")))
    far = [_sharpness(f, _band_rows(BANDS - 1)) for f in result.frames]
    assert all(a > b for a, b in zip(far, far[1:])), far
    assert far[-1] < 0.1 * far[0]
    # ... while the focused band stays sharp.
    near = [_sharpness(f, _band_rows(0)) for f in result.frames]
    assert min(near) > 0.9 * near[0]
    # Each frame is exactly the single render with that K.
    single = render(str(photo), depth=str(disparity), focus=Focus.point(48, 10),
                    settings=RenderSettings(k=result.values[3]))
    np.testing.assert_array_equal(result.frames[3], (np.clip(single.image, 0, 1) * 255 + 0.5).astype(np.uint8))


def test_focus_sweep_moves_the_sharpest_band_from_near_to_far(scene):
    photo, disparity = scene
    request = RenderRequest(str(photo), depth=str(disparity), settings=RenderSettings(k=20))
    result = sweep_mod.render_sweep(request, kind="focus", frames=BANDS)
    assert result.values == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0], abs=1e-4)
    assert result.k == [20.0] * BANDS
    sharpest = []
    for frame in result.frames:
        scores = [_sharpness(frame, _band_rows(b)) for b in range(BANDS)]
        sharpest.append(int(np.argmax(scores)))
    assert sharpest == list(range(BANDS))  # band 0 (nearest) first, the farthest last


def test_focus_sweep_spans_the_maps_own_range_and_notes_an_ignored_focus(tmp_path):
    # Approximate depth is not normalised (0.05 .. 0.9): the sweep goes from its max to its min.
    request = RenderRequest(_noise(), depth="approximate", focus=Focus.point(5, 5), settings=RenderSettings(k=8))
    result = sweep_mod.render_sweep(request, kind="focus", frames=3)
    assert result.approximate_depth
    assert result.values[0] == pytest.approx(0.9, abs=1e-6) and result.values[-1] == pytest.approx(0.05, abs=1e-6)
    assert any("not used" in m for m in result.messages)
    assert any("this sweep uses approximate depth" in m and is_warning(m) for m in result.messages)
    assert not any(is_warning(m) for m in result.messages if "not used" in m)


def test_a_sweep_estimates_depth_once(monkeypatch):
    calls = []
    real = depth_mod.approximate_disparity

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(depth_mod, "approximate_disparity", counting)
    for kind in ("aperture", "focus"):
        depth_mod.DEPTH_CACHE.clear()
        calls.clear()
        sweep_mod.render_sweep(RenderRequest(_noise(1), depth="approximate"), kind=kind, frames=4)
        assert len(calls) == 1, kind


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frames=1), "between 2 and 120 frames"),
        (dict(frames=2.5), "whole number"),
        (dict(k_max=0), "largest K above 0"),
        (dict(k_max=40), "K=40 is outside"),
        (dict(kind="zoom"), "unknown sweep kind"),
    ],
)
def test_bad_sweep_arguments_are_refused(kwargs, message):
    with pytest.raises(MagicBokehError, match=message):
        sweep_mod.render_sweep(RenderRequest(_noise(), depth=_bands()), **kwargs)


def test_contact_sheet_is_a_strip_or_a_grid():
    frames = [np.full((10, 20, 3), i * 40, np.uint8) for i in range(5)]
    strip = sweep_mod.contact_sheet(frames)
    assert strip.shape == (10, 100, 3)
    np.testing.assert_array_equal(strip, np.concatenate(frames, axis=1))
    grid = sweep_mod.contact_sheet(frames, max_width=60)  # too wide: ceil(sqrt(5)) = 3 columns
    assert grid.shape == (20, 60, 3)
    np.testing.assert_array_equal(grid[10:, 20:40], frames[4])
    assert (grid[10:, 40:] == 255).all()  # the empty cell is white


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_gif_has_every_frame_at_the_photo_size(scene, tmp_path, capsys):
    photo, disparity = scene
    out = tmp_path / "sweep.gif"
    assert _cli(str(photo), "-o", str(out), "--kind", "aperture", "--frames", "5", "--k-max", "20",
                "--depth", str(disparity), "--focus", "48,10", "--fps", "4") == 0
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (SIZE, SIZE)
        assert gif.info["duration"] == 250 and gif.info["loop"] == 0


def test_cli_folder_holds_exactly_the_frames_in_order(scene, tmp_path, capsys):
    photo, disparity = scene
    out = tmp_path / "frames"
    out.mkdir()
    (out / "frame_007.png").write_bytes(b"stale frame of an earlier, longer sweep")
    assert main(["sweep", str(photo), "-o", str(out), "--kind", "focus", "--frames", "4", "--K", "16",
                 "--depth", str(disparity), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:03d}.png" for i in range(4)]
    assert info["frames"] == 4 and info["files"] == [str(out / f"frame_{i:03d}.png") for i in range(4)]
    request = RenderRequest(str(photo), depth=str(disparity), settings=RenderSettings(k=16))
    expected = sweep_mod.render_sweep(request, kind="focus", frames=4).frames
    for i, frame in enumerate(expected):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"frame_{i:03d}.png")), frame)


def test_cli_png_strip_and_new_folder_without_suffix(scene, tmp_path):
    photo, disparity = scene
    assert _cli(str(photo), "-o", str(tmp_path / "strip.png"), "--frames", "3", "--depth", str(disparity)) == 0
    with Image.open(tmp_path / "strip.png") as strip:
        assert strip.size == (3 * SIZE, SIZE)
    assert _cli(str(photo), "-o", str(tmp_path / "new" / "frames"), "--frames", "2", "--depth", str(disparity)) == 0
    assert sorted(p.name for p in (tmp_path / "new" / "frames").iterdir()) == ["frame_000.png", "frame_001.png"]


@pytest.mark.parametrize("flag", ["--depth", "--depth-model"])
def test_cli_approximate_depth_works_and_says_so(scene, tmp_path, capsys, flag):
    photo, _ = scene
    assert main(["sweep", str(photo), "-o", str(tmp_path / "a.gif"), "--frames", "2", flag, "approximate"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "note: this sweep uses approximate depth" in out


def test_cli_depth_model_runs_once_for_the_whole_sweep(scene, tmp_path, capsys, tiny_depth_model, monkeypatch):
    photo, _ = scene
    calls = []
    real = depth_mod.DepthAnythingEstimator.__call__

    def counting(self, rgb):
        calls.append(self.input_size)
        return real(self, rgb)

    monkeypatch.setattr(depth_mod.DepthAnythingEstimator, "__call__", counting)
    assert main(["sweep", str(photo), "-o", str(tmp_path / "m.gif"), "--kind", "focus", "--frames", "3",
                 "--depth-model", str(tiny_depth_model), "--depth-input-size", "28", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert calls == [28]
    assert info["approximate_depth"] is False and info["frames"] == 3


def _refused(capsys, code: int, needle: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--frames", "1"], "between 2 and 120 frames"),
        (["--k-max", "0"], "largest K above 0"),
        (["--fps", "0"], "fps=0 is outside"),
        (["--kind", "focus", "--K", "40"], "K=40 is outside"),
    ],
)
def test_cli_bad_numbers_exit_2_before_rendering(scene, tmp_path, capsys, monkeypatch, extra, needle):
    photo, disparity = scene
    monkeypatch.setattr(sweep_mod, "render_sweep", _must_not_render)
    code = _cli(str(photo), "-o", str(tmp_path / "x.gif"), "--depth", str(disparity), *extra)
    _refused(capsys, code, needle)
    assert not (tmp_path / "x.gif").exists()


def _must_not_render(*args, **kwargs):
    raise AssertionError("rendered although the input was refused")


def test_cli_unwritable_or_unsupported_outputs_exit_2_before_rendering(scene, tmp_path, capsys, monkeypatch):
    photo, disparity = scene
    monkeypatch.setattr(sweep_mod, "render_sweep", _must_not_render)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _refused(capsys, _cli(str(photo), "-o", str(blocker / "out.gif"), "--depth", str(disparity)),
             "cannot write")
    _refused(capsys, _cli(str(photo), "-o", str(tmp_path / "out.jpg"), "--depth", str(disparity)),
             "use a .gif, .mp4 or .png file, or a folder")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "holiday.jpg").write_bytes(b"someone's photo")
    _refused(capsys, _cli(str(photo), "-o", str(busy), "--depth", str(disparity)), "already holds other files")
    assert sorted(p.name for p in busy.iterdir()) == ["holiday.jpg"]


def test_cli_missing_photo_exits_2_and_creates_nothing(tmp_path, capsys):
    _refused(capsys, _cli(str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "out" / "frames")), "no such file")
    assert not (tmp_path / "out").exists()


def test_cli_mp4_without_an_encoder_says_what_to_install(scene, tmp_path, capsys, monkeypatch):
    photo, disparity = scene
    monkeypatch.setattr(sweep_mod, "_mp4_writer_available", lambda: False)
    _refused(capsys, _cli(str(photo), "-o", str(tmp_path / "s.mp4"), "--depth", str(disparity)),
             'pip install "imageio[ffmpeg]"')
    assert not (tmp_path / "s.mp4").exists()


def test_cli_mp4_with_an_encoder(scene, tmp_path):
    pytest.importorskip("imageio_ffmpeg")  # optional encoder: in requirements-test.txt (CI runs this)
    photo, disparity = scene
    out = tmp_path / "s.mp4"
    assert _cli(str(photo), "-o", str(out), "--frames", "3", "--depth", str(disparity)) == 0
    import imageio.v2 as imageio

    with imageio.get_reader(str(out)) as reader:
        frames = [f for f in reader]
    assert len(frames) == 3 and frames[0].shape == (SIZE, SIZE, 3)


def test_progress_covers_every_frame_of_a_model_backend(monkeypatch):
    from magicbokeh import backends as backends_mod
    from magicbokeh.backends import Availability, Backend, BackendResult

    class HalfwayBackend(Backend):
        name = "test-halfway"

        def availability(self, options=None):
            return Availability(True, "test only")

        def render(self, image, disparity, focus_disparity, k, *, options, image_key, progress=None):
            progress(0.5, "halfway")
            return BackendResult(image.copy())

    monkeypatch.setitem(backends_mod._REGISTRY, "test-halfway", HalfwayBackend)
    monkeypatch.setitem(backends_mod._INSTANCES, "test-halfway", HalfwayBackend())
    seen = []
    request = RenderRequest(_noise(), depth=_bands(), settings=RenderSettings(backend="test-halfway"))
    result = sweep_mod.render_sweep(request, frames=3, progress=lambda f, s: seen.append((f, s)))
    assert result.backend == "test-halfway" and len(result.frames) == 3
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert (pytest.approx(1.5 / 3), "frame 2/3: halfway") in seen


def test_frames_take_the_given_render_road(scene):
    """A sweep hands each frame's request to the renderer it is given (the app's GPU router)."""
    from magicbokeh.pipeline import run

    photo, disparity = scene
    seen = []

    def road(request, progress):
        seen.append(request)
        return run(request, progress)

    request = RenderRequest(str(photo), depth=str(disparity), focus=Focus.point(48, 10))
    result = sweep_mod.render_sweep(request, kind="aperture", frames=3, k_max=16, render=road)
    assert [r.settings.k for r in seen] == [0.0, 8.0, 16.0]
    assert all(r.focus == Focus.point(48, 10) and r.depth == str(disparity) for r in seen)
    default = sweep_mod.render_sweep(request, kind="aperture", frames=3, k_max=16)
    assert all(np.array_equal(a, b) for a, b in zip(result.frames, default.frames))
