"""Small helpers shared by the training programs: checkpoint folders, resume, metrics log.

Checkpoint layout (one folder per saved step, inside a run's output folder)::

    OUT_DIR/
      checkpoint-500/          complete: has the COMPLETE marker, written last
        COMPLETE               JSON {"step": 500, "time": ...}
        ...                    whatever the trainer saved (weights, accelerate state, progress)
      checkpoint-1000.tmp     half-written (the run stopped while saving): never resumed from
      metrics.jsonl            one JSON object per line

A checkpoint is written into a temporary sibling folder, the marker is written last, and the folder
is then swapped in by :func:`magicbokeh.publish.swap_in_folder`. A folder named ``checkpoint-STEP`` without the marker (for
example copied by hand, or left by another tool) is ignored as well, so :func:`last_checkpoint`
only ever returns a checkpoint that was completely written. The helpers are generic (no torch, no
accelerate): every trainer of the project uses them.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..publish import publish_text, swap_in_folder

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"
_CHECKPOINT_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """The folder of the checkpoint saved after optimizer step ``step`` (>= 0)."""
    return Path(output_dir) / f"{CHECKPOINT_PREFIX}{int(step)}"


def is_complete_checkpoint(folder: str | Path) -> bool:
    """True when ``folder`` is a ``checkpoint-STEP`` folder whose writing finished (marker present)."""
    folder = Path(folder)
    return bool(_CHECKPOINT_RE.match(folder.name)) and (folder / COMPLETE_MARKER).is_file()


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir`` as ``(step, folder)``, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and is_complete_checkpoint(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def last_checkpoint(output_dir: str | Path) -> tuple[int, Path] | None:
    """The complete checkpoint with the highest step in ``output_dir``, or None when there is none."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


@contextmanager
def atomic_checkpoint(output_dir: str | Path, step: int, *, is_main_process: bool = True,
                      wait: Any = None) -> Iterator[Path]:
    """Write a checkpoint into a temporary folder, then publish it as ``checkpoint-STEP`` atomically.

    Usage::

        with atomic_checkpoint(out, step, is_main_process=acc.is_main_process,
                               wait=acc.wait_for_everyone) as tmp:
            ...  # every process writes its files under tmp

    Args:
        output_dir: the run's output folder (must be shared by all processes of a multi-node run).
        step: optimizer step the checkpoint belongs to.
        is_main_process: only the main process creates, marks and renames the folder.
        wait: a barrier callable (``accelerator.wait_for_everyone``) for multi-process runs; it is
            called after the folder exists and again before the marker and rename.

    If the body raises, the temporary folder stays behind (it is never mistaken for a checkpoint) and
    is cleaned up by the next :func:`remove_stale_temporaries`. An existing complete checkpoint of the
    same step is replaced.
    """
    output_dir = Path(output_dir)
    final = checkpoint_dir(output_dir, step)
    # The name must be identical on every process: derive it from the step, not a random id.
    tmp = output_dir / f"{final.name}.tmp"
    if is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    if wait is not None:
        wait()
    yield tmp
    if wait is not None:
        wait()
    if is_main_process:
        publish_text(tmp / COMPLETE_MARKER, json.dumps({"step": int(step), "time": time.time()}) + "\n")
        swap_in_folder(tmp, final)  # an existing checkpoint of this step goes aside as *.old-<id>
        logger.info("saved %s", final)
    if wait is not None:
        wait()


def remove_stale_temporaries(output_dir: str | Path) -> list[Path]:
    """Delete half-written checkpoint folders (``checkpoint-*.tmp*``, ``*.old-*``); returns them."""
    root = Path(output_dir)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith(CHECKPOINT_PREFIX) and (
            ".tmp" in child.name or ".old-" in child.name
        ):
            logger.warning("removing half-written checkpoint folder %s", child)
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def prune_checkpoints(output_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return []
    removed = []
    for _, folder in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class MetricsLog:
    """Append-only ``metrics.jsonl`` writer: one JSON object per line, flushed after each write.

    On resume from step ``resume_step`` the lines of later steps (written by the interrupted run after
    its last complete checkpoint) are dropped, so the file always describes one consistent run. Only
    the main process should create a writer. Non-finite floats are written as ``null``.
    """

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            publish_text(self.path, "")
        elif self.path.exists():
            kept = [rec for rec in read_metrics(self.path) if int(rec.get("step", 0)) <= resume_step]
            self._rewrite(kept)

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        publish_text(self.path, "".join(_dumps(rec) + "\n" for rec in records))

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (must contain ``step``)."""
        if "step" not in record:
            raise ValueError("a metrics record needs a 'step' field")
        with self.path.open("a") as fh:
            fh.write(_dumps(dict(record)) + "\n")


def _dumps(record: Mapping[str, Any]) -> str:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean, sort_keys=False)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file; a torn last line (crash mid-write) is skipped."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("skipping a malformed line in %s", path)
    return records


__all__ = [
    "CHECKPOINT_PREFIX",
    "COMPLETE_MARKER",
    "MetricsLog",
    "atomic_checkpoint",
    "checkpoint_dir",
    "is_complete_checkpoint",
    "last_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "read_metrics",
    "remove_stale_temporaries",
]
