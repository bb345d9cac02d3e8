"""Atomic publishing: the one way magicbokeh writes a file or a folder that others may read.

Every writer follows the same three steps:

1. write under a temporary name **in the same folder** as the target (so the final rename never
   crosses a file system and stays atomic);
2. flush the data to disk (``fsync`` of the file, or of every file and folder of a tree);
3. ``os.replace`` the temporary onto the target, then flush the parent folder's entry.

Guarantees:

* a reader sees either the previous complete target or the new complete one, never a half-written
  file (for a folder that replaces an existing one, see :func:`swap_in_folder`);
* when the writing fails (an exception, including ``KeyboardInterrupt``) the previous target is left
  untouched and the temporary is removed;
* cleanup only ever deletes what this module created in this call (its own uniquely named temporary,
  or the replaced old copy of the target); a pre-existing file with a temporary-looking name is never
  touched.

Temporary names are hidden and unique: ``.NAME.tmp-<hex>SUFFIX`` for files (the real suffix is kept
because writers such as OpenCV choose the format from it) and ``.NAME.tmp-<hex>`` for folders. A
process killed mid-write (``kill -9``, power loss) can leave such a temporary behind; it is never
mistaken for the target.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

__all__ = [
    "fsync_folder",
    "fsync_tree",
    "publish_bytes",
    "publish_file",
    "publish_folder",
    "publish_text",
    "swap_in_folder",
    "temporary_name",
]


def temporary_name(path: str | Path, *, keep_suffix: bool = True) -> Path:
    """A unique hidden sibling of ``path``: ``.STEM.tmp-<hex>SUFFIX`` (or ``.NAME.tmp-<hex>``)."""
    path = Path(path)
    tag = uuid.uuid4().hex[:12]
    if keep_suffix and path.suffix:
        return path.with_name(f".{path.stem}.tmp-{tag}{path.suffix}")
    return path.with_name(f".{path.name}.tmp-{tag}")


def _fsync_path(path: Path) -> None:
    """fsync one file or folder where the OS allows it (folders cannot be opened on some systems)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (names created or renamed in it) to disk; no-op where unsupported."""
    _fsync_path(Path(folder))


def fsync_tree(root: str | Path) -> None:
    """Flush every file and folder under ``root`` (and ``root`` itself) to disk."""
    root = Path(root)
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def publish_file(path: str | Path, *, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Usage::

        with publish_file(out / "image.png") as tmp:
            cv2.imwrite(str(tmp), pixels)

    The body must create the temporary file (a body that writes nothing raises ``FileNotFoundError``
    and leaves ``path`` untouched). The parent folder must exist. On any exception in the body the
    temporary is deleted, ``path`` keeps its previous content, and the exception propagates.
    """
    path = Path(path)
    tmp = temporary_name(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to the temporary of {str(path)!r}")
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def publish_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`publish_file`); returns ``path``."""
    path = Path(path)
    with publish_file(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return path


def publish_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`publish_file`); returns ``path``."""
    return publish_bytes(path, text.encode(encoding))


def swap_in_folder(staged: str | Path, target: str | Path, *,
                   if_exists: Literal["replace", "keep"] = "replace") -> bool:
    """Publish the finished folder ``staged`` as ``target`` (same parent folder); True when it did.

    The staged tree is flushed to disk first. When ``target`` does not exist this is one atomic
    ``os.replace``. When it exists:

    * ``if_exists="replace"``: the old target is first renamed to ``TARGET.old-<hex>`` beside it,
      the staged folder takes its name, and the old copy is deleted. Between the two renames the
      target name is briefly absent, but no reader ever sees a mixture of old and new files; if the
      second rename fails the old copy is put back.
    * ``if_exists="keep"``: the existing target wins (e.g. another process published an identical
      cache entry first); ``staged`` is deleted and False is returned.
    """
    staged, target = Path(staged), Path(target)
    fsync_tree(staged)
    if not target.exists():
        try:
            os.replace(staged, target)
        except OSError:
            if not target.exists():
                raise
            # Lost a race against another publisher of the same target: fall through.
        else:
            fsync_folder(target.parent)
            return True
    if if_exists == "keep":
        _remove(staged)
        return False
    old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(old, target)
        raise
    fsync_folder(target.parent)
    _remove(old)
    return True


@contextmanager
def publish_folder(path: str | Path, *,
                   if_exists: Literal["replace", "keep"] = "replace") -> Iterator[Path]:
    """Yield an empty temporary sibling folder to fill; on success it becomes ``path``.

    Usage::

        with publish_folder(out / "final") as tmp:
            model.save_pretrained(tmp)

    The parent folder is created if needed. On any exception in the body the temporary folder is
    deleted, ``path`` keeps its previous content, and the exception propagates. See
    :func:`swap_in_folder` for what happens when ``path`` already exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, keep_suffix=False)
    tmp.mkdir()
    try:
        yield tmp
        swap_in_folder(tmp, path, if_exists=if_exists)
    except BaseException:
        _remove(tmp)
        raise
