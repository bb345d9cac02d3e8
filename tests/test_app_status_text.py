"""The status line shows core messages as written (they are plain text inside Markdown)."""

from __future__ import annotations

from magicbokeh import notes
from magicbokeh.ui.views import note_lines


def test_paths_with_tildes_are_not_struck_through() -> None:
    info = "weights not in ~/.cache/huggingface; copy them to ~/.cache/magicbokeh"
    lines = note_lines([info, info])
    assert len(lines) == 1  # one line per distinct message
    assert lines[0] == "· weights not in \\~/.cache/huggingface; copy them to \\~/.cache/magicbokeh"


def test_warnings_keep_their_flag_after_escaping() -> None:
    (line,) = note_lines([notes.warning("no model in ~/.cache")])
    assert line == "⚠ no model in \\~/.cache"
