"""The project installs as a package: a wheel with only ``magicbokeh/``, a ``magicbokeh`` console script,
and the same requirements the app installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: without build isolation setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for req in ROOT.glob("requirements*.txt"):
        shutil.copy2(req, source / req.name)
    shutil.copytree(ROOT / "magicbokeh", source / "magicbokeh", ignore=shutil.ignore_patterns("__pycache__"))
    # No build isolation: the venv's setuptools builds it, so the test needs no network.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = list(out.glob("magicbokeh-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_only_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"magicbokeh", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "magicbokeh/cli.py" in names and "magicbokeh/__main__.py" in names
    assert not any(name.startswith(("tests/", "bench/", "app.py", "examples/")) for name in names)
    # Every subpackage on disk is in the wheel (a forgotten __init__.py or package list would drop one).
    on_disk = {str(p.relative_to(ROOT)).replace("\\", "/") for p in (ROOT / "magicbokeh").rglob("*.py")}
    assert on_disk <= set(names), sorted(on_disk - set(names))[:5]


def test_wheel_declares_console_script_and_app_requirements(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    dist_info = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert "[console_scripts]" in entry_points
    assert "magicbokeh = magicbokeh.cli:main" in entry_points
    metadata = archive.read(f"{dist_info}/METADATA").decode()
    declared = {line.split(":", 1)[1].strip().replace(" ", "") for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line}
    expected = {line.replace(" ", "") for line in _requirement_lines(ROOT / "requirements.txt")}
    # Markers are normalised by the metadata writer (quotes), so compare the names and pins.
    strip = lambda req: req.split(";")[0]  # noqa: E731
    assert {strip(r) for r in declared} == {strip(r) for r in expected}


def test_console_script_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    script = target / "bin" / "magicbokeh"
    assert script.exists(), sorted(p.name for p in (target / "bin").iterdir()) if (target / "bin").exists() else None
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    # Run from an unrelated folder, so the checkout's magicbokeh/ is not importable by accident.
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "render" in proc.stdout
    imported = subprocess.run([sys.executable, "-c", "import magicbokeh; print(magicbokeh.__file__)"],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert imported.stdout.strip().startswith(str(target)), imported.stdout + imported.stderr


def test_public_names_resolve_without_heavy_imports() -> None:
    """Every name in ``magicbokeh.__all__`` resolves, and ``import magicbokeh`` alone pulls in neither torch
    nor gradio (the CLI's start-up and a user's ``import`` stay fast)."""
    code = (
        "import sys, magicbokeh\n"
        "heavy = sorted(m for m in ('torch', 'gradio', 'diffusers', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in magicbokeh.__all__ if n != '__version__' and getattr(magicbokeh, n, None) is None]\n"
        "assert not missing, missing\n"
        "print(len(magicbokeh.__all__))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) >= 10
