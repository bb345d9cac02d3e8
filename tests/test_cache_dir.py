"""One rule for where converted weights are cached (diffusion, DA depth, LDF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from magicbokeh.cache import cache_dir
from magicbokeh.depth import convert_dadepth
from magicbokeh.diffusion import loading
from magicbokeh.subject import ldf


def test_environment_names_the_root_and_each_kind_has_its_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", str(tmp_path))
    assert loading.cache_root() == tmp_path / "diffusion"
    assert convert_dadepth.cache_root() == tmp_path / "depth"
    assert ldf.cache_root() == tmp_path / "saliency"
    assert loading.cache_root(tmp_path / "x") == tmp_path / "x" / "diffusion"


def test_default_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MAGICBOKEH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("depth") == tmp_path / "magicbokeh" / "depth"


@pytest.mark.parametrize("off", ["off", "none", "0", "false", " OFF "])
def test_off_disables_where_possible_and_falls_back_where_a_folder_is_needed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, off: str
) -> None:
    monkeypatch.setenv("MAGICBOKEH_CACHE_DIR", off)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert loading.cache_root() is None
    assert convert_dadepth.cache_root() == tmp_path / "magicbokeh" / "depth"
    assert ldf.cache_root() == tmp_path / "magicbokeh" / "saliency"
