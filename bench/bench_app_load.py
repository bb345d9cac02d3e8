"""Load benchmark of the Gradio app: N concurrent gradio_client users against a local launch.

The app (``app.demo``) is launched in this process on 127.0.0.1 (loopback only) and driven
through its public ``/render`` endpoint. For each N in ``--users`` every user sends
``--requests`` renders of a small photo; reported: completed, failures, median and worst time to
result, the highest queue position a user saw, and this process's peak RSS (sampled every
0.1 s: the server runs here). Then ``--leak-requests`` sequential requests check that the
server's memory does not grow per request (RSS after a warm-up vs after all of them).

Classical backend by default (no weights, no GPU). ``--backend magicbokeh`` on a machine with
the weights and a GPU measures the diffusion backend the same way.

Usage::

    python bench/bench_app_load.py --out bench/results_app_load.md [--users 1 4 16] [--requests 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Samples this process's RSS in a thread; ``peak`` is the highest value seen (MB)."""

    def __init__(self, every_s: float = 0.1):
        self.every_s, self.peak, self._stop = every_s, rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_photo(path: Path, h: int, w: int) -> Path:
    """A photo-like JPEG of h x w pixels."""
    from PIL import Image

    from bench_diffusion_common import bench_image

    img, _ = bench_image(h, w)
    Image.fromarray((img * 255).round().astype("uint8")).save(path, quality=92)
    return path


def one_user(url: str, photo: Path, backend: str, requests: int, k: float, out: list, lock: threading.Lock,
             user: int = 0) -> None:
    """One visitor: its own client, ``requests`` renders in a row; appends (seconds, error, max rank).

    Every visitor sends the same request (same photo, focus and K), as when many visitors click
    the same example: concurrent responses are byte-identical, which the app must survive.
    """
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False)
    except Exception as exc:  # noqa: BLE001
        with lock:
            out.extend([(float("nan"), f"connect: {exc}", 0)] * requests)
        return
    for i in range(requests):
        t0 = time.perf_counter()
        max_rank, error = 0, None
        try:
            job = client.submit(image=handle_file(str(photo)), focus_x=100, focus_y=60, k=k,
                                backend=backend, api_name="/render")
            while not job.done():
                status = job.status()
                if getattr(status, "rank", None) is not None:
                    max_rank = max(max_rank, int(status.rank) + 1)
                time.sleep(0.05)
            job.result()
        except Exception as exc:  # noqa: BLE001 - counted as a failure
            error = f"{type(exc).__name__}: {str(exc)[:120]}"
        with lock:
            out.append((time.perf_counter() - t0, error, max_rank))


def run_level(url: str, photo: Path, backend: str, users: int, requests: int, k: float) -> dict:
    results: list = []
    lock = threading.Lock()
    threads = [threading.Thread(target=one_user, args=(url, photo, backend, requests, k, results, lock, u))
               for u in range(users)]
    with RssSampler() as rss:
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    ok = [s for s, e, _ in results if e is None]
    errors = [e for _, e, _ in results if e is not None]
    return {
        "users": users, "requests": len(results), "completed": len(ok), "failures": len(errors),
        "median_s": statistics.median(ok) if ok else float("nan"), "worst_s": max(ok) if ok else float("nan"),
        "max_queue_position": max((r for _, _, r in results), default=0), "wall_s": wall,
        "peak_rss_mb": rss.peak, "errors": sorted(set(errors))[:3],
    }  # fmt: skip


def leak_check(url: str, photo: Path, backend: str, n: int, k: float) -> dict:
    """RSS after 10 warm-up requests vs after ``n`` more, one client, one at a time."""
    import gc

    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    call = lambda i: client.predict(image=handle_file(str(photo)), focus_x=100, focus_y=60,  # noqa: E731
                                    k=k, backend=backend, api_name="/render")
    for i in range(10):
        call(i)
    gc.collect()
    before = rss_mb()
    samples = []
    t0 = time.perf_counter()
    for i in range(n):
        call(i)
        if (i + 1) % max(1, n // 5) == 0:
            gc.collect()
            samples.append(round(rss_mb(), 1))
    gc.collect()
    after = rss_mb()
    step = max(1, n // 5)
    slope = 1024 * (samples[-1] - samples[0]) / (step * (len(samples) - 1)) if len(samples) > 1 else float("nan")
    return {"requests": n, "rss_before_mb": before, "rss_after_mb": after, "growth_mb": after - before,
            "per_request_kb": 1024 * (after - before) / n, "samples_mb": samples, "slope_kb_per_request": slope,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def markdown(args, env: dict, levels: list[dict], leak: dict | None) -> str:
    lines = [
        "## App load benchmark (`bench/bench_app_load.py`)",
        "",
        f"Machine: {env['machine']}; Python {env['python']}, gradio {env['gradio']}, gradio_client "
        f"{env['gradio_client']}. The app is launched in the benchmark's process on 127.0.0.1 and driven "
        f"through `/render` by N gradio_client users, each sending {args.requests} identical request(s) of a "
        f"{args.width}x{args.height} photo, backend `{args.backend}`, K = {args.k:g}, depth: "
        f"{env['depth']}. Peak RSS is this process (server + clients), sampled every 0.1 s.",
        "",
        "| users | requests | completed | failures | median time to result (s) | worst (s) | highest queue position seen | wall (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in levels:
        lines.append(f"| {r['users']} | {r['requests']} | {r['completed']} | {r['failures']} | {r['median_s']:.2f} | "
                     f"{r['worst_s']:.2f} | {r['max_queue_position']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    for r in levels:
        if r["errors"]:
            lines.append(f"\n* N = {r['users']} errors: {'; '.join(r['errors'])}")
    if leak:
        lines += ["", f"Memory over {leak['requests']} sequential requests (after 10 warm-up requests): RSS "
                  f"{leak['rss_before_mb']:.0f} MB → {leak['rss_after_mb']:.0f} MB ({leak['growth_mb']:+.1f} MB, "
                  f"{leak['per_request_kb']:+.0f} kB per request overall; RSS every {leak['requests'] // 5} "
                  f"requests: {leak['samples_mb']} MB, a slope of {leak['slope_kb_per_request']:+.1f} kB per request "
                  f"after the first {leak['requests'] // 5}), {leak['seconds']:.0f} s."]
    lines += ["", f"Notes: {env['notes']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="markdown file to write (and .json next to it)")
    p.add_argument("--users", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=2, help="requests per user at each level")
    p.add_argument("--leak-requests", type=int, default=100, help="sequential requests of the memory check (0: skip)")
    p.add_argument("--backend", default="classical")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=427)
    p.add_argument("--k", type=float, default=16.0)
    p.add_argument("--app-dir", help="folder holding the app.py to launch (default: the repository root)")
    args = p.parse_args(argv)

    import gradio
    import gradio_client

    if args.app_dir:
        sys.path.insert(0, str(Path(args.app_dir).resolve()))
    import app

    port = free_port()
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    queue = getattr(app.demo, "_queue", None)
    env = {
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores", "python": platform.python_version(),
        "gradio": gradio.__version__, "gradio_client": gradio_client.__version__,
        "depth": "automatic (offline here: approximate depth)" if os.environ.get("HF_HUB_OFFLINE") else "automatic",
        "notes": f"app {Path(app.__file__).resolve()}; queue max_size={getattr(queue, 'max_size', '?')}, render "
                 f"concurrency limit {getattr(app, 'RENDER_CONCURRENCY', 1)}",
    }  # fmt: skip
    levels, leak = [], None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            photo = test_photo(Path(tmp) / "photo.jpg", args.height, args.width)
            for users in args.users:
                r = run_level(url, photo, args.backend, users, args.requests, args.k)
                levels.append(r)
                print(json.dumps(r), flush=True)
            if args.leak_requests > 0:
                leak = leak_check(url, photo, args.backend, args.leak_requests, args.k)
                print(json.dumps(leak), flush=True)
    finally:
        app.demo.close()
    text = markdown(args, env, levels, leak)
    print(text)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"env": env, "levels": levels, "leak": leak}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
