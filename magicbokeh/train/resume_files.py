"""Reading a checkpoint's own files on resume: a damaged file is one clear error, not a traceback.

A checkpoint is published atomically, so damage means something outside the trainer changed it
(a disk error, a copy cut short, a hand edit). Both trainers read ``trainer_state.json`` with
:func:`read_state_json` and load optimizer/accelerate state inside :func:`damaged_checkpoint`.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MagicBokehError


def _hint(folder: Path) -> str:
    return (f"move {folder.name} aside to resume from the checkpoint before it, or start a new --output folder")


def read_state_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; MagicBokehError naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MagicBokehError(f"{path} is damaged (not valid JSON: {exc}); {_hint(_checkpoint_of(path))}.") from None
    if not isinstance(data, dict):
        raise MagicBokehError(f"{path} is damaged (a JSON {type(data).__name__}, not an object); "
                              f"{_hint(_checkpoint_of(path))}.")
    return data


def _checkpoint_of(path: Path) -> Path:
    """The ``checkpoint-STEP`` folder holding ``path`` (or its parent when there is none)."""
    for parent in path.parents:
        if parent.name.startswith("checkpoint-"):
            return parent
    return path.parent


@contextmanager
def damaged_checkpoint(folder: str | Path, what: str) -> Iterator[None]:
    """Turn a failure to read ``what`` (optimizer state, trainer state) of ``folder`` into one line.

    Catches what truncated or garbled safetensors, torch pickles, zip archives and state dicts
    raise; a MagicBokehError and Ctrl-C pass through unchanged.
    """
    from safetensors import SafetensorError

    folder = Path(folder)
    try:
        yield
    except MagicBokehError:
        raise
    except (SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
            KeyError, IndexError, TypeError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        checkpoint = _checkpoint_of(folder / "x") if not folder.name.startswith("checkpoint-") else folder
        raise MagicBokehError(
            f"cannot resume from {checkpoint}: its {what} is damaged or truncated ({type(exc).__name__}: "
            f"{reason}); {_hint(checkpoint)}."
        ) from None


__all__ = ["damaged_checkpoint", "read_state_json"]
