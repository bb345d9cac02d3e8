"""The CLI never overwrites an input, refuses bad outputs and option values before any work, and
publishes every file atomically (a failed write leaves the previous output untouched).

"Before any work" is checked by replacing the render entry points with functions that fail the test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import textured
from magicbokeh.cli import main
from magicbokeh.errors import MagicBokehError
from magicbokeh.images import save_png


@pytest.fixture
def no_work(monkeypatch):
    """Any render, sweep or degradation fails the test: the refusal must come first."""
    import magicbokeh.degradation as degradation
    import magicbokeh.pipeline as pipeline
    import magicbokeh.sweep as sweep

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    monkeypatch.setattr(pipeline, "run", forbidden)
    monkeypatch.setattr(sweep, "render_sweep", forbidden)
    monkeypatch.setattr(degradation, "degrade", forbidden)


@pytest.fixture
def photo(tmp_path) -> Path:
    return save_png(tmp_path / "photo.png", textured(40, 56, seed=3))


def _refused(capsys, argv: list[str], *needles: str) -> str:
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "internal error" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("command", [["render"], ["sweep"], ["degrade"]])
def test_output_equal_to_the_input_is_refused(photo, capsys, no_work, command) -> None:
    before = photo.read_bytes()
    _refused(capsys, [*command, str(photo), "-o", str(photo)], "is an input")
    # Through another spelling of the same path, too.
    other = photo.parent / "." / photo.name
    _refused(capsys, [*command, str(photo), "-o", str(other)], "is an input")
    assert photo.read_bytes() == before


def test_depth_map_or_mask_as_output_is_refused(photo, tmp_path, capsys, no_work) -> None:
    disp = save_png(tmp_path / "disp.png", np.tile(np.linspace(0, 1, 56, dtype=np.float32), (40, 1)), bits=16)
    before = disp.read_bytes()
    _refused(capsys, ["render", str(photo), "-o", str(tmp_path / "out.png"), "--depth", str(disp),
                      "--save-depth", str(disp)], "--save-depth", "is an input")
    _refused(capsys, ["render", str(photo), "-o", str(tmp_path / "out.png"),
                      "--save-defocus", str(tmp_path / "out.png")], "would both write")
    assert disp.read_bytes() == before


def test_folder_output_onto_the_inputs_is_refused(tmp_path, capsys, no_work) -> None:
    src = tmp_path / "in"
    save_png(src / "a.png", textured(30, 30, seed=1))
    save_png(src / "b.png", textured(30, 30, seed=2))
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    _refused(capsys, ["render", str(src), "-o", str(src)], "is an input", "a.png")
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_colliding_stems_are_refused_before_work(tmp_path, capsys, no_work) -> None:
    src = tmp_path / "in"
    save_png(src / "a.png", textured(30, 30, seed=1))
    save_png(src / "a.jpg", textured(30, 30, seed=2))
    _refused(capsys, ["render", str(src), "-o", str(tmp_path / "out")], "same name", "a.jpg", "a.png")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_output_suffix_is_refused_before_work(photo, tmp_path, capsys, no_work) -> None:
    err = _refused(capsys, ["render", str(photo), "-o", str(tmp_path / "out.txt")], "'.txt'", ".png", ".jpg")
    assert "supported" in err
    _refused(capsys, ["render", str(photo), "-o", str(tmp_path / "out.png"),
                      "--save-depth", str(tmp_path / "d.jpg")], "--save-depth", ".png")
    _refused(capsys, ["sweep", str(photo), "-o", str(tmp_path / "out.txt")], ".gif")
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("option", [
    ["--shape", "polygon", "--rotation", "nan"],
    ["--shape", "polygon", "--rotation", "inf"],
    ["--K", "nan"],
    ["--focal-range", "nan"],
    ["--focus", "nan,3"],
    ["--focus-disparity", "inf"],
])
@pytest.mark.parametrize("command", ["render", "sweep"])
def test_nan_and_inf_options_are_refused_before_work(photo, tmp_path, capsys, no_work, option, command) -> None:
    if command == "sweep" and option[0] == "--K":
        option = ["--kind", "focus", *option]
    out = tmp_path / ("out.png" if command == "render" else "out.gif")
    _refused(capsys, [command, str(photo), "-o", str(out), *option])
    assert not out.exists()


def test_nan_rotation_through_the_api_is_refused(photo) -> None:
    from magicbokeh.pipeline import run
    from magicbokeh.request import RenderRequest, RenderSettings

    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(MagicBokehError, match="rotation"):
            RenderSettings(aperture="polygon", rotation_deg=bad).checked()
        with pytest.raises(MagicBokehError, match="rotation"):
            run(RenderRequest(str(photo), depth="approximate",
                              settings=RenderSettings(aperture="polygon", rotation_deg=bad)))
    # A finite rotation renders a non-black image (the NaN case used to give an all-black one).
    result = run(RenderRequest(str(photo), depth="approximate",
                               settings=RenderSettings(k=8, aperture="polygon", rotation_deg=30.0)))
    assert np.isfinite(result.image).all() and result.image.mean() > 0.1


def test_output_folder_that_cannot_be_created_is_a_clear_error(photo, tmp_path, capsys, no_work) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _refused(capsys, ["render", str(photo), "-o", str(blocker / "out.png")], "cannot write")
    _refused(capsys, ["degrade", str(photo), "-o", str(blocker / "out.png")], "cannot write")


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root ignores folder permissions")
def test_read_only_output_folder_is_a_clear_error(photo, tmp_path, capsys, no_work) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(capsys, ["render", str(photo), "-o", str(ro / "out.png")], "cannot write")
    finally:
        ro.chmod(0o755)


def test_read_only_folder_simulated_is_a_clear_error(photo, tmp_path, monkeypatch, capsys, no_work) -> None:
    """The same refusal where root ignores permissions: creating any file in the folder fails."""
    import errno

    import magicbokeh.output_paths as output_paths

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(output_paths.tempfile, "NamedTemporaryFile", refuse)
    for command in ("render", "degrade"):
        _refused(capsys, [command, str(photo), "-o", str(tmp_path / "out" / "x.png")],
                 "cannot write", "Read-only file system")


# -- atomic publishing ---------------------------------------------------------------------------


def _full_disk(monkeypatch, module, name):
    """Replace ``module.name`` by a writer that writes half a file, then fails like a full disk."""
    import errno

    def writer(target, *args, **kwargs):
        Path(str(target)).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, name, writer)


def test_failed_png_write_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    import cv2

    out = save_png(tmp_path / "out.png", np.full((8, 8, 3), 0.5, np.float32))
    before = out.read_bytes()
    _full_disk(monkeypatch, cv2, "imwrite")
    with pytest.raises(MagicBokehError, match="No space left"):
        save_png(out, np.zeros((8, 8, 3), np.float32))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left behind


def test_cli_render_with_a_full_disk_keeps_the_previous_output(photo, tmp_path, monkeypatch, capsys) -> None:
    import cv2

    out = tmp_path / "out.png"
    assert main(["-q", "render", str(photo), "-o", str(out), "--depth", "approximate", "--K", "4"]) == 0
    before = out.read_bytes()
    _full_disk(monkeypatch, cv2, "imwrite")
    assert main(["-q", "render", str(photo), "-o", str(out), "--depth", "approximate", "--K", "12"]) == 2
    assert "No space left" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_failed_sweep_never_leaves_a_truncated_gif(tmp_path, monkeypatch) -> None:
    from PIL import Image

    from magicbokeh.sweep import write_gif

    frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 128, 255)]
    out = write_gif(frames, tmp_path / "sweep.gif")
    before = out.read_bytes()

    real_save = Image.Image.save

    def half_then_full(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        Path(fp).write_bytes(Path(fp).read_bytes()[:40])  # truncated, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_then_full)
    with pytest.raises(MagicBokehError, match="No space left"):
        write_gif(frames[::-1], out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.gif"]


def test_failed_frames_folder_keeps_the_previous_frames(tmp_path, monkeypatch) -> None:
    import cv2

    from magicbokeh.sweep import write_frames

    frames = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20, 30)]
    folder = tmp_path / "frames"
    write_frames(frames, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = {"n": 0}
    real = cv2.imwrite

    def fails_on_second(path, arr, *a):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(path, arr, *a)

    monkeypatch.setattr(cv2, "imwrite", fails_on_second)
    with pytest.raises(MagicBokehError):
        write_frames(frames[:2], folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
