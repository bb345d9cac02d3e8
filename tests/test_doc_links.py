"""Every path into docs/ and every relative Markdown link cited in the repository points at a file.

Pages get renamed and folders removed (a drafts folder once was); comments, docstrings, configs and
pages that still cite the old paths send readers nowhere. This scans the repository's own ``.md``,
``.py`` and ``.yaml`` files (not the virtual environment or caches).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUFFIXES = (".md", ".py", ".yaml", ".yml")
SKIP_DIRS = {"__pycache__", "node_modules", "build", "out"}
#: ``docs/...`` as a path, not inside a URL (``https://host/docs/...``) or a longer name.
DOCS_PATH = re.compile(r"(?<![\w/.:-])((?:\.{1,2}/)*docs/[\w./-]*)")
#: A Markdown link target: ``[text](target)``.
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def repo_files() -> list[Path]:
    out = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS and not d.endswith(".egg-info")]
        out += [Path(folder) / f for f in files if f.endswith(SUFFIXES)]
    return sorted(p for p in out if p != Path(__file__).resolve())  # this file cites made-up paths


def cited_paths(path: Path, text: str) -> list[tuple[int, str, Path]]:
    """(line, as written, resolved path) for each docs/ path and relative Markdown link in a file."""
    found = []
    for m in DOCS_PATH.finditer(text):
        written = m.group(1).rstrip(".")
        base = path.parent if written.startswith(".") else REPO
        found.append((text.count("\n", 0, m.start()) + 1, written, base / written))
    if path.suffix == ".md":
        for m in MD_LINK.finditer(text):
            target = m.group(1).split("#")[0]
            if target and not SCHEME.match(target):
                found.append((text.count("\n", 0, m.start()) + 1, m.group(1), path.parent / target))
    return found


def test_scanner_finds_paths_and_links_and_skips_urls(tmp_path):
    text = (
        "see docs/a.md, and (docs/b/c.md). https://host/docs/x.md is a URL; mydocs/y.md is another name\n"
        "[page](../docs/d.md#part) [web](https://e.org/f) [top](#anchor) [here](g.md)\n"
    )
    page = REPO / "docs" / "page.md"
    written = [(line, w) for line, w, _ in cited_paths(page, text)]
    assert written == [(1, "docs/a.md"), (1, "docs/b/c.md"), (2, "../docs/d.md"),
                       (2, "../docs/d.md#part"), (2, "g.md")]  # fmt: skip
    resolved = [p for _, _, p in cited_paths(page, text)]
    assert resolved[0] == REPO / "docs" / "a.md" and resolved[2] == REPO / "docs" / ".." / "docs" / "d.md"
    assert resolved[4] == REPO / "docs" / "g.md"


def test_every_cited_docs_path_and_relative_link_exists():
    missing = []
    for path in repo_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for line, written, target in cited_paths(path, text):
            if not target.exists():
                missing.append(f"{path.relative_to(REPO)}:{line}: {written}")
    assert not missing, "cited paths that do not exist:\n" + "\n".join(missing)
