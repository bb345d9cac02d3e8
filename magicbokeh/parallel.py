"""Embarrassingly parallel work sharded by index: local processes, or a Ray cluster.

Data synthesis and dataset evaluation call :func:`map_indexed` with a picklable top-level function
of one index. Results come back in index order whatever engine ran them, so ``workers=1``,
``workers=N`` and Ray give the same output. Ray is an optional extra, imported only when asked for.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Sequence

from .errors import MagicBokehError

logger = logging.getLogger(__name__)


def _progress_bar(total: int, desc: str | None, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, file=sys.stderr)


def map_indexed(
    fn: Callable[[Any], Any],
    items: Sequence[Any] | Iterable[Any],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    desc: str | None = None,
    progress: bool = True,
) -> list[Any]:
    """``[fn(item) for item in items]``, run in-process, over ``workers`` processes, or on Ray.

    Args:
        fn: a picklable module-level function of one item (an index, or a small tuple).
        items: what to map over; results keep this order.
        workers: local processes (1 = in this process). Ignored when ``ray_address`` is given.
        ray_address: ``"auto"``, ``"local"`` (start a local Ray instance) or ``"ray://HOST:PORT"``;
            each item becomes one Ray task on that cluster.
        desc: progress-bar label.
        progress: show a tqdm bar on stderr.
    """
    items = list(items)
    if workers < 1:
        raise MagicBokehError(f"--workers must be at least 1; got {workers}.")
    bar = _progress_bar(len(items), desc, progress)
    try:
        if ray_address:
            return _map_ray(fn, items, ray_address, bar)
        if workers == 1 or len(items) <= 1:
            out = []
            for item in items:
                out.append(fn(item))
                bar.update(1)
            return out
        return _map_processes(fn, items, workers, bar)
    finally:
        bar.close()


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C reaches the whole process group; only the parent acts on it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _map_processes(fn: Callable[[Any], Any], items: list[Any], workers: int, bar: Any) -> list[Any]:
    """The local-process engine. On Ctrl-C or a failed item, pending items are cancelled and the
    workers stopped at once (a plain ``with ProcessPoolExecutor`` would first finish every item)."""
    # spawn: safe with torch and OpenCV thread pools, unlike fork.
    ctx = multiprocessing.get_context("spawn")
    results: list[Any] = [None] * len(items)
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx, initializer=_ignore_sigint)
    try:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        ours = set(multiprocessing.active_children()) - before  # this pool's workers only
        for proc in ours:
            proc.terminate()
        for proc in ours:
            proc.join(timeout=10)
        raise
    pool.shutdown(wait=True)
    return results


def _map_ray(fn: Callable[[Any], Any], items: list[Any], address: str, bar: Any) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise MagicBokehError(
            "--ray needs the Ray extra: pip install 'ray[default]' (on every node of the cluster)."
        ) from None
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError, OSError) as exc:
            # Ray reports an unreachable or missing cluster with these; the reason's first line is enough.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise MagicBokehError(
                f"cannot connect to Ray at {address!r}: {reason}. Check the address, or start a cluster "
                "with 'ray start --head' ('auto' joins it, 'local' starts one here)."
            ) from None
    remote = ray.remote(fn)
    refs = [remote.remote(item) for item in items]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(items)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            results[index[ref]] = ray.get(ref)
            bar.update(1)
    return results
