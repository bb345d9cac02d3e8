"""Foreseeable file-system failures end with one ``error:`` line and exit 2, not "internal error"."""

from __future__ import annotations

import errno

import pytest

from conftest import textured
from magicbokeh.entrypoint import EXIT_BAD_INPUT, run_command
from magicbokeh.images import save_png


@pytest.mark.parametrize("code, words", [
    (errno.EROFS, "read-only file system"),
    (errno.EACCES, "Permission denied"),
    (errno.ENOSPC, "free some space"),
])
def test_user_os_errors_are_one_line_with_exit_2(capsys, code, words) -> None:
    def work() -> int:
        raise OSError(code, {errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied",
                             errno.ENOSPC: "No space left on device"}[code], "/data/out/table.md")

    assert run_command(work) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot access '/data/out/table.md'") and words in err
    assert len(err.splitlines()) == 1 and "internal error" not in err


def test_other_os_errors_stay_internal(capsys) -> None:
    def work() -> int:
        raise OSError(errno.EBADF, "Bad file descriptor")

    assert run_command(work) == 1
    assert "internal error" in capsys.readouterr().err


def test_eval_table_under_a_file_is_a_clear_error(tmp_path, capsys) -> None:
    """``-o`` whose folder is a file: NotADirectoryError used to be an internal error."""
    from magicbokeh.eval import sr

    for i in range(2):
        img = textured(24, 24, seed=i)
        save_png(tmp_path / "hq" / f"x{i}.png", img)
        save_png(tmp_path / "lq" / f"x{i}.png", img)
    (tmp_path / "blocker").write_text("a file")
    rc = sr.main(["--lq", str(tmp_path / "lq"), "--hq", str(tmp_path / "hq"),
                  "--backend", f"predictions:{tmp_path / 'hq'}", "--metrics", "psnr",
                  "-o", str(tmp_path / "blocker" / "table.md"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: cannot access" in err and "blocker" in err and "internal error" not in err


@pytest.mark.parametrize("case", ["plain", "thread", "profiled"])
def test_exit_process_flushes_runs_atexit_and_waits_for_threads(tmp_path, case) -> None:
    """The quick exit of ``python -m magicbokeh`` loses no output, keeps the exit code, waits for a
    non-daemon thread that still works, runs the atexit handlers, and leaves a profiler its report."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "command.py"
    script.write_text(
        "import atexit, sys, threading, time\n"
        "from magicbokeh.entrypoint import exit_process\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        f"if {case == 'thread'}:\n"
        "    threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
        "print('x' * 100000)\n"
        "print('to stderr', file=sys.stderr)\n"
        "exit_process(3)\n"
    )
    profiler = ["-m", "cProfile"] if case == "profiled" else []
    proc = subprocess.run([sys.executable, *profiler, str(script)], capture_output=True, text=True, cwd=REPO,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == (0 if case == "profiled" else 3)  # cProfile itself swallows SystemExit
    lines = proc.stdout.splitlines()
    assert lines[0] == "x" * 100000 and "atexit ran" in lines
    assert ("thread done" in lines) == (case == "thread")
    assert any("function calls" in line for line in lines) == (case == "profiled")
    assert proc.stderr == "to stderr\n"
