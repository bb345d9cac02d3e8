"""Hugging Face hub access that never hangs an offline machine.

``from_pretrained`` on a machine without network retries for ~50 s before failing. Every loader in
magicbokeh first asks :func:`cached_file` (instant) and only downloads when :func:`hub_reachable`
says the hub answers, so the app starts in seconds offline and says what is missing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

_PROBE: dict[str, tuple[float, bool]] = {}
_PROBE_TTL_S = 60.0


def offline_requested() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network use."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection (result cached for a minute)."""
    if offline_requested():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    now = time.monotonic()
    cached = _PROBE.get(host)
    if cached and now - cached[0] < _PROBE_TTL_S:
        return cached[1]
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            ok = True
    except OSError:
        ok = False
    _PROBE[host] = (now, ok)
    logger.debug("hub %s reachable: %s", host, ok)
    return ok


def is_local_source(source: str) -> bool:
    """A source is local when it names an existing file or folder."""
    return Path(source).expanduser().exists()


def cached_file(repo_id: str, filename: str, *, revision: str | None = None) -> str | None:
    """Path of ``filename`` from ``repo_id`` in the local HF cache, or None (never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except ValueError:  # not a valid repo id (e.g. a missing local path): nothing cached under it
        return None
    return found if isinstance(found, str) else None


def missing_weights_message(what: str, repo_id: str, *, hint: str = "") -> str:
    """One sentence saying why weights cannot be had and how to get them."""
    why = "HF_HUB_OFFLINE is set" if offline_requested() else "no network"
    return (
        f"{what} not available: {why} and {repo_id} is not in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}). Run once online, set HF_HOME to a "
        f"cache that has it{', or ' + hint if hint else ''}."
    )
