"""Optional packages and CI: the tests that need them run in CI instead of skipping.

* scikit-image (SSIM cross-check, test images) and the MP4 encoder (imageio + imageio-ffmpeg) are
  in requirements-test.txt, so the README's test command installs them; this file fails if they
  are dropped from it or missing from the test environment.
* pyiqa cannot run offline for any metric the evaluation offers (all download weights), so it is
  not installed; the pyiqa code path of the evaluation runs here with a stand-in ``pyiqa`` module.
* ``.ci/run`` installs Chromium exactly when the browser tests would skip (``/usr/bin/chromium``
  missing) and runs the README's test command verbatim.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import textured

REPO = Path(__file__).resolve().parents[1]


def _requirements(name: str) -> set[str]:
    names = set()
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower())
    return names


@pytest.mark.parametrize(("package", "module"), [
    ("scikit-image", "skimage.metrics"), ("imageio", "imageio"), ("imageio-ffmpeg", "imageio_ffmpeg"),
])
def test_optional_test_packages_are_required_and_installed(package: str, module: str) -> None:
    assert package in _requirements("requirements-test.txt")
    assert importlib.util.find_spec(module) is not None, f"run: pip install -r requirements-test.txt ({package})"


def test_ci_installs_chromium_where_the_browser_tests_look_for_it() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    browser = (REPO / "tests" / "test_app_browser.py").read_text()
    path = re.search(r'CHROMIUM = Path\("([^"]+)"\)', browser).group(1)
    assert re.search(rf"if \[ ! -x {re.escape(path)} \]; then\s+apt-get update", ci), path
    assert "command -v chromium" not in ci


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    command = next(ln.strip() for ln in readme.splitlines()
                   if "requirements-test.txt" in ln and ln.strip().endswith("pytest -q"))
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert ci_lines[-1] == command


# ------------------------------------------------------------------------------------------------
# The pyiqa path of the evaluation, with a stand-in module


class _FakeMetric:
    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    def __call__(self, *args):
        self.calls.append((self.name, args))
        if self.name == "fid":  # a set metric: two folders of PNGs
            out, ref = (Path(a) for a in args)
            return torch.tensor(float(len(list(out.glob("*.png"))) + 10 * len(list(ref.glob("*.png")))))
        if self.name == "lpips":  # full-reference: mean absolute difference
            return (args[0] - args[1]).abs().mean()
        return args[0].mean() * 100  # no-reference: mean brightness x 100


@pytest.fixture
def fake_pyiqa(monkeypatch: pytest.MonkeyPatch) -> list:
    from magicbokeh.eval import common

    calls: list = []
    module = types.ModuleType("pyiqa")
    module.__spec__ = importlib.machinery.ModuleSpec("pyiqa", loader=None)

    def create_metric(name: str, device=None):
        if name == "dists":
            raise OSError("weights not downloadable here")
        return _FakeMetric(name, calls)

    module.create_metric = create_metric
    monkeypatch.setitem(sys.modules, "pyiqa", module)
    monkeypatch.setattr(common, "_PYIQA_METRICS", {})
    return calls


def test_pyiqa_path_scores_per_image_and_per_set(fake_pyiqa: list, tmp_path: Path, capsys) -> None:
    from magicbokeh.eval import sr as eval_sr
    from magicbokeh.images import save_png

    lq, hq = tmp_path / "lq", tmp_path / "hq"
    for i in range(2):
        save_png(lq / f"img{i}.png", textured(32, 40, seed=i))
        save_png(hq / f"img{i}.png", textured(32, 40, seed=i + 10))  # a different image
    rc = eval_sr.main(["--lq", str(lq), "--hq", str(hq), "--backend", "classical", "-q",
                       "--metrics", "psnr,lpips,dists,musiq,fid"])
    assert rc == 0
    text = capsys.readouterr().out
    row = next(ln for ln in text.splitlines() if ln.startswith("| classical"))
    cells = [c.strip() for c in row.strip("|").split("|")]

    per_image = [(n, a) for n, a in fake_pyiqa if n in ("lpips", "musiq")]
    assert sorted(n for n, _ in per_image) == ["lpips", "lpips", "musiq", "musiq"]
    for name, args in per_image:  # (1, 3, H, W) float tensors in [0, 1]
        assert all(a.shape == (1, 3, 32, 40) and a.dtype == torch.float32 for a in args)
        assert all(0.0 <= float(a.min()) and float(a.max()) <= 1.0 for a in args)
    lpips = np.mean([float((a[0] - a[1]).abs().mean()) for n, a in per_image if n == "lpips"])
    musiq = np.mean([float(a[0].mean()) * 100 for n, a in per_image if n == "musiq"])
    header = [c.strip() for c in next(ln for ln in text.splitlines() if ln.startswith("| Method")).strip("|").split("|")]
    values = dict(zip(header, ["classical", *cells[1:]]))
    assert lpips > 0.01  # output and reference differ, so swapped arguments would show
    assert values["LPIPS ↓"] == f"{lpips:.4f}"
    assert values["DISTS ↓"] == "unavailable"
    assert values["MUSIQ ↑"] == f"{musiq:.2f}"
    assert values["FID ↓"] == f"{2 + 10 * 2:.2f}"  # both sets hold the two images
