"""Where converted weights are cached: one rule for every converter (diffusion, DA depth, LDF).

``$MAGICBOKEH_CACHE_DIR/<kind>`` when set, else ``$XDG_CACHE_HOME/magicbokeh/<kind>`` (default
``~/.cache/magicbokeh/<kind>``). ``off`` / ``none`` / ``0`` / ``false`` turn the cache off where a caller
can work without one.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE_DIR = "MAGICBOKEH_CACHE_DIR"
_OFF = {"off", "none", "0", "false"}


def cache_dir(kind: str, setting: str | os.PathLike | None = None, *, may_disable: bool = True) -> Path | None:
    """Cache folder for ``kind`` (e.g. ``"depth"``); ``setting`` overrides ``$MAGICBOKEH_CACHE_DIR``.

    Returns None when the setting turns the cache off and ``may_disable`` is true; with
    ``may_disable=False`` (converters that must write somewhere) "off" means the default folder.
    """
    raw = (os.fspath(setting) if setting is not None else os.environ.get(ENV_CACHE_DIR, "")).strip()
    if raw.lower() in _OFF:
        if may_disable:
            return None
        raw = ""
    if raw:
        return Path(raw).expanduser() / kind
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "magicbokeh" / kind
