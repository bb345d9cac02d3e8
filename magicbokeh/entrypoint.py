"""What every command-line entry point shares: logging levels and turning failures into exit codes.

``python -m magicbokeh ...``, the evaluation tools, the data generator and the trainers all call
:func:`run_command`, so bad input always ends with one ``error: ...`` line on stderr and exit code 2,
an interrupt with 130, and an unexpected failure with one line (the traceback only with ``-v``).
File-system refusals the user can act on (a read-only folder, a full disk, a missing path) are bad
input too: one ``error: cannot access 'PATH': ...`` line and exit 2.
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import Callable

from .errors import MagicBokehError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Errors only with ``quiet``; else warnings, info (``-v``) or debug (``-vv``)."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(int(verbose), 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


#: File-system refusals that come from the user's files or machine, not from a bug.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT,
                errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


def user_os_error(exc: OSError) -> str | None:
    """One line for an OSError the user can act on (read-only folder, full disk, missing path), else None."""
    if exc.errno not in _USER_ERRNOS:
        return None
    where = f" {str(exc.filename)!r}" if exc.filename else ""
    hint = {errno.EROFS: " (read-only file system)", errno.ENOSPC: "; free some space",
            errno.EDQUOT: "; free some space", errno.EEXIST: " (a file is where a folder is needed)"}.get(exc.errno, "")
    return f"cannot access{where}: {exc.strerror or exc}{hint}."


def run_command(work: Callable[[], int], *, verbose: int = 0, interrupted: str = "interrupted") -> int:
    """Run ``work()`` and map failures to exit codes (see the module docstring).

    ``interrupted``: the line printed on Ctrl-C (trainers say how to resume).
    """
    try:
        return work()
    except MagicBokehError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        message = user_os_error(exc)
        if message is None:
            if verbose:
                raise
            print(f"internal error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
            return 1
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: out of memory; try a smaller image (or batch), or set MAGICBOKEH_MAX_MEGAPIXELS lower.",
              file=sys.stderr)
        return 1
    except Exception as exc:  # last resort: one line, the traceback only with -v
        if verbose:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return 1
