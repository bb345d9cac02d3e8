"""Atomic publishing: a failure keeps the previous file or folder and leaves no temporary behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from magicbokeh.publish import publish_bytes, publish_file, publish_folder, publish_text, swap_in_folder


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_publish_bytes_writes_and_replaces(tmp_path):
    target = tmp_path / "a.bin"
    publish_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    publish_bytes(target, b"two, longer")
    assert target.read_bytes() == b"two, longer"
    assert _listing(tmp_path) == ["a.bin"]


def test_failure_mid_write_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "meta.json"
    publish_text(target, '{"old": 1}\n')
    seen = []
    with pytest.raises(RuntimeError, match="disk full"):
        with publish_file(target) as tmp:
            seen.append(tmp)
            tmp.write_bytes(b'{"new": ')  # half of the new content ...
            raise RuntimeError("disk full")  # ... then the writer dies
    assert target.read_text() == '{"old": 1}\n'
    assert not seen[0].exists()
    assert _listing(tmp_path) == ["meta.json"]


def test_interrupt_is_handled_like_an_error(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(KeyboardInterrupt):
        with publish_file(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_temporary_is_a_hidden_sibling_with_the_real_suffix(tmp_path):
    target = tmp_path / "000001.png"
    with publish_file(target) as tmp:
        assert tmp.parent == tmp_path  # same folder: os.replace stays atomic
        assert tmp.name.startswith(".000001.tmp") and tmp.suffix == ".png"
        assert not target.exists()  # nothing visible under the real name while writing
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


def test_body_that_writes_nothing_is_an_error_and_keeps_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with publish_file(target):
            pass
    assert target.read_text() == "old"


def test_concurrent_publishers_use_distinct_temporaries(tmp_path):
    target = tmp_path / "a.txt"
    with publish_file(target) as tmp1, publish_file(target) as tmp2:
        assert tmp1 != tmp2
        tmp1.write_text("first")
        tmp2.write_text("second")
    # The outer context exits last, so its content wins; both temporaries are gone.
    assert target.read_text() == "first"
    assert _listing(tmp_path) == ["a.txt"]


def test_foreign_temporary_looking_file_is_never_deleted(tmp_path):
    foreign = tmp_path / ".a.tmp-123456789abc.txt"
    foreign.write_text("someone else's")
    with pytest.raises(ValueError):
        with publish_file(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
            raise ValueError
    assert foreign.read_text() == "someone else's"


def test_publish_folder_creates_and_replaces(tmp_path):
    final = tmp_path / "run" / "final"
    with publish_folder(final) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir()) and tmp.parent == final.parent
        (tmp / "weights.bin").write_bytes(b"v1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text("{}")
    assert _listing(final) == ["sub", "sub/config.json", "weights.bin"]
    with publish_folder(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"v2")
    assert _listing(final) == ["weights.bin"]  # replaced as a whole, not merged
    assert (final / "weights.bin").read_bytes() == b"v2"
    assert _listing(tmp_path / "run") == ["final", "final/weights.bin"]  # no .old-/.tmp- left over


def test_publish_folder_failure_keeps_previous_folder(tmp_path):
    final = tmp_path / "final"
    with publish_folder(final) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(OSError, match="boom"):
        with publish_folder(final) as tmp:
            (tmp / "a").write_text("new")
            raise OSError("boom")
    assert (final / "a").read_text() == "old"
    assert _listing(tmp_path) == ["final", "final/a"]


def test_publish_folder_keep_lets_the_existing_copy_win(tmp_path):
    final = tmp_path / "cache"
    final.mkdir()
    (final / "a").write_text("first publisher")
    with publish_folder(final, if_exists="keep") as tmp:
        (tmp / "a").write_text("second publisher")
    assert (final / "a").read_text() == "first publisher"
    assert _listing(tmp_path) == ["cache", "cache/a"]


def test_swap_in_folder_restores_old_copy_when_the_second_rename_fails(tmp_path, monkeypatch):
    final, staged = tmp_path / "final", tmp_path / "staged"
    final.mkdir()
    (final / "a").write_text("old")
    staged.mkdir()
    (staged / "a").write_text("new")
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src) == staged:
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="rename failed"):
        swap_in_folder(staged, final)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (final / "a").read_text() == "old"
    assert len(calls) == 3  # old aside, staged in (fails), old back
