"""Shared fixtures for the app tests (imported by tests/test_app*.py, not auto-loaded by pytest).

Sets an offline, quiet environment before ``app`` is imported: no analytics, no Hub access, and a
temporary examples cache so lazily cached examples never land in the working tree.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="magicbokeh-examples-cache-"))
# Gradio's file cache is content-addressed and shared by every process using the same folder; a
# closing app deletes "its" files, which may be another test session's identical files.
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="magicbokeh-gradio-tmp-"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import app  # noqa: E402  (after the environment is set)


@pytest.fixture(scope="module")
def app_url():
    """The demo launched in-process on a free local port; closed after the module's tests."""
    _, url, _ = app.launch(
        port=None,
        prevent_thread_lock=True,
        quiet=True,
        show_error=True,
        ssr_mode=False,
        mcp=False,
    )
    try:
        yield url.rstrip("/") + "/"
    finally:
        app.demo.close()
