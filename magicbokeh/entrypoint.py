"""What every command-line entry point shares: logging levels and turning failures into exit codes.

``python -m magicbokeh ...``, the evaluation tools, the data generator and the trainers all call
:func:`run_command`, so bad input always ends with one ``error: ...`` line on stderr and exit code 2,
an interrupt with 130, and an unexpected failure with one line (the traceback only with ``-v``).
File-system refusals the user can act on (a read-only folder, a full disk, a missing path) are bad
input too: one ``error: cannot access 'PATH': ...`` line and exit 2.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import sys
import threading
from typing import Callable, NoReturn

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


def exit_process(code: int) -> NoReturn:
    """End a command-line process with ``code`` once its work is done and its output written.

    The interpreter's own teardown frees every module and object one by one: ~0.2 s after a render
    that loaded Numba/LLVM and OpenCV, with the result already on disk. This does what the normal
    exit does before that teardown, in its order: wait for the non-daemon threads (worker pools
    finish their queued work and stop), run the atexit handlers (logging, temporary folders...),
    flush stdout and stderr; then it leaves with ``os._exit``. It exits normally (``sys.exit``)
    under a profiler or tracer (``python -m cProfile -m magicbokeh``, a debugger, coverage), so the
    tool still reports afterwards, when stdout cannot be flushed (a closed pipe), so that is
    reported as usual, and on an interpreter without ``threading._shutdown``.
    """
    shutdown_threads = getattr(threading, "_shutdown", None)  # the interpreter's own first exit step
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if not isinstance(code, int) or watched or shutdown_threads is None or run_exit_handlers is None:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    shutdown_threads()  # joins the non-daemon threads, as the normal exit does first
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # anything printed by a thread or an atexit handler
        except (OSError, ValueError):
            pass
    os._exit(code)
