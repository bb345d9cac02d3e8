"""Ctrl-C during ``python -m magicbokeh.data.synth --workers 2`` stops promptly and leaves no worker.

The interrupt is sent to the whole process group, as a terminal does. "Promptly" is asserted by
counting samples (the old behaviour finished every pending sample first); the 60 s bound on the
wait is only a hang guard, not a timing measurement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or os.name != "posix",
                                reason="reads the process table from /proc")


def _children(pid: int) -> set[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def test_ctrl_c_stops_synth_workers(tmp_path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "magicbokeh.data.synth", "--out", str(tmp_path / "data"), "--num", "400",
         "--size", "96", "--workers", "2", "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        # Wait until both workers exist and the first samples are published (real work is under way).
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while time.monotonic() < deadline:
            workers |= {p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()}
            done = list((tmp_path / "data").rglob("*.json")) if (tmp_path / "data").exists() else []
            if len(workers) >= 2 and done:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert len(workers) >= 2, "the workers never started"
        at_interrupt = len(list((tmp_path / "data").rglob("*.json")))
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("synth kept running 60 s after Ctrl-C")
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        time.sleep(0.5)
        assert not [p for p in workers if _alive(p)], "worker processes left behind"
        # Generation stopped: at most the samples in flight were finished (not the remaining ~400).
        assert len(list((tmp_path / "data").rglob("*.json"))) <= at_interrupt + 6
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
