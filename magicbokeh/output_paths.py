"""Checks on where a command will write, made before any work: suffix, clashes, writability.

The command-line front ends call these first, so a typo (``-o out.txt``), an output that would
overwrite an input (``-o photo.jpg`` on ``photo.jpg``, or ``-o`` the input folder) or two outputs
with one name (``a.jpg`` and ``a.png`` both giving ``a.png``) is refused with one line before
anything is loaded or rendered. Writing itself goes through :mod:`magicbokeh.publish`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import MagicBokehError, preview_names

#: Suffixes an 8-bit image output may have (OpenCV chooses the format from the suffix).
IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
#: Suffixes a 16-bit map output may have (only these formats keep 16 bits).
MAP_OUTPUT_SUFFIXES = (".png", ".tif", ".tiff")


def check_suffix(path: str | Path, allowed: tuple[str, ...], what: str = "-o") -> Path:
    """Refuse an output whose suffix is not in ``allowed``, listing the supported ones."""
    path = Path(path)
    if path.suffix.lower() not in allowed:
        got = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise MagicBokehError(
            f"{what} {str(path)!r}: cannot write {got}; supported: {', '.join(allowed)}."
        )
    return path


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or one inode (hard link, case folding)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_no_clash(inputs: Iterable[str | Path | None], outputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """Refuse an output that is one of the inputs, or two outputs with the same path.

    Args:
        inputs: files the command reads (None entries are skipped).
        outputs: ``(label, path)`` of every file the command would write (None entries skipped);
            the label names it in the message (e.g. "-o", "--save-depth", "output for a.png").
    """
    ins = [Path(p).expanduser() for p in inputs if p is not None and not isinstance(p, (bytes, bytearray))]
    seen: list[tuple[str, Path]] = []
    for label, raw in outputs:
        if raw is None:
            continue
        out = Path(raw).expanduser()
        for src in ins:
            if _same(out, src):
                raise MagicBokehError(
                    f"{label} {str(out)!r} is an input: writing it would overwrite {str(src)!r}; "
                    "choose another output name."
                )
        for other_label, other in seen:
            if _same(out, other):
                raise MagicBokehError(
                    f"{label} and {other_label} would both write {str(out)!r}; choose distinct outputs."
                )
        seen.append((label, out))


def check_unique_stems(paths: Iterable[Path], what: str = "photos") -> None:
    """Refuse inputs whose stems collide (``a.jpg`` and ``a.png`` would both become ``a.png``)."""
    by_stem: dict[str, list[str]] = {}
    for p in paths:
        by_stem.setdefault(p.stem, []).append(p.name)
    clashes = sorted(names for names in by_stem.values() if len(names) > 1)
    if clashes:
        shown = "; ".join(preview_names(sorted(n)) for n in clashes[:3])
        raise MagicBokehError(
            f"{what} with the same name would be written to one output file ({shown}); "
            "rename them or render them separately."
        )


def check_writable_folder(folder: str | Path, what: str) -> None:
    """Create ``folder`` if needed and check that a file can be created in it (before any work)."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".magicbokeh-write-test-"):
            pass
    except OSError as exc:
        raise MagicBokehError(f"cannot write {what} in {str(folder)!r}: {exc.strerror or exc}.") from None


__all__ = [
    "IMAGE_OUTPUT_SUFFIXES", "MAP_OUTPUT_SUFFIXES", "check_suffix", "check_no_clash",
    "check_unique_stems", "check_writable_folder",
]
