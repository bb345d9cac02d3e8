"""An evaluation whose predictions are all unreadable is an error (exit 2), not a table of blanks.

Also: eval tables are published atomically, and a Ray address that cannot be reached is one clear line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import textured
from magicbokeh.images import save_png


def _sr_pairs(root: Path, n: int = 2) -> tuple[Path, Path]:
    lq, hq = root / "lq", root / "hq"
    for i in range(n):
        img = textured(32, 40, seed=20 + i)
        save_png(hq / f"img{i}.png", img)
        save_png(lq / f"img{i}.png", img)
    return lq, hq


def test_sr_eval_with_only_unreadable_predictions_fails(tmp_path, capsys) -> None:
    from magicbokeh.eval import sr

    lq, hq = _sr_pairs(tmp_path)
    pred = tmp_path / "pred"
    pred.mkdir()
    for i in range(2):
        (pred / f"img{i}.png").write_bytes(b"not an image at all")
    out = tmp_path / "table.md"
    rc = sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", f"predictions:{pred}", "--metrics", "psnr",
                  "-o", str(out), "-q"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "none of the 2 image(s) could be evaluated" in captured.err and "img0" in captured.err
    assert "internal error" not in captured.err
    assert "n/a" not in captured.out and "–" not in captured.out  # no table of blanks
    assert not out.exists()


def test_sr_eval_with_one_readable_prediction_still_reports(tmp_path, capsys) -> None:
    from magicbokeh.eval import sr

    lq, hq = _sr_pairs(tmp_path)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "img0.png").write_bytes((hq / "img0.png").read_bytes())
    (pred / "img1.png").write_bytes(b"garbage")
    rc = sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", f"predictions:{pred}", "--metrics", "psnr", "-q"])
    assert rc == 0
    assert "1 evaluated, 1 skipped" in capsys.readouterr().out


def test_depth_eval_with_only_unreadable_predictions_fails(tmp_path, capsys) -> None:
    from magicbokeh.eval import depth as evaldepth

    rgb, depth = tmp_path / "scenes" / "rgb", tmp_path / "scenes" / "depth"
    depth.mkdir(parents=True)
    pred = tmp_path / "pred"
    pred.mkdir()
    for i in range(2):
        save_png(rgb / f"img{i}.png", textured(24, 32, seed=i))
        np.save(depth / f"img{i}.npy", np.linspace(1, 5, 24 * 32, dtype=np.float32).reshape(24, 32))
        (pred / f"img{i}.npy").write_bytes(b"truncated")
    rc = evaldepth.main(["--data", str(tmp_path / "scenes"), "--model", f"predictions:{pred}",
                         "--conditions", "clear", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "scored no frame" in err and "internal error" not in err


def test_unreachable_ray_address_is_one_clear_line(monkeypatch, capsys) -> None:
    """The Ray client's connection failure (stubbed: Ray is an optional extra) becomes a user error."""
    import types

    from magicbokeh.entrypoint import run_command
    from magicbokeh.parallel import map_indexed

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False

    def init(address=None, **kwargs):
        raise ConnectionError(f"Failed to connect to GCS at address {address} within 5 seconds")

    fake.init = init
    monkeypatch.setitem(sys.modules, "ray", fake)
    rc = run_command(lambda: len(map_indexed(abs, [1, 2], ray_address="ray://10.255.0.1:10001", progress=False)))
    err = capsys.readouterr().err
    assert rc == 2
    assert "cannot connect to Ray at 'ray://10.255.0.1:10001'" in err and "internal error" not in err
