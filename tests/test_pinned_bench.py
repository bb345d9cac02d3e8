"""Benchmark records: a rerun of the degradation bench keeps hand-written notes, and the figures in
BENCHMARKS.md are those of its results file (no timing is measured here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"


def _bench_module():
    sys.path.insert(0, str(BENCH))  # the script imports its neighbour bench_classical
    try:
        spec = importlib.util.spec_from_file_location("bench_degradation_under_test", BENCH / "bench_degradation.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _table_rows(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("| ")]


def test_rerun_rewrites_only_the_marked_table(tmp_path: Path) -> None:
    bench = _bench_module()
    results = tmp_path / "results_degradation.md"
    original = (BENCH / "results_degradation.md").read_text()
    results.write_text(original)
    notes = original[original.index(bench.END) + len(bench.END):]
    assert "written by hand" in notes  # the notes live outside the markers

    table = "Machine: test.\n\n| preset | s |\n|---|---|\n| zoom | 0.001 s |\n"
    bench.write_table(results, table)
    bench.write_table(results, table)  # idempotent
    text = results.read_text()
    assert text.endswith(notes)
    assert _table_rows(text) == ["| preset | s |", "| zoom | 0.001 s |"]
    assert text.count(bench.START) == 1 and text.count(bench.END) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_file_without_markers_keeps_its_text(tmp_path: Path) -> None:
    bench = _bench_module()
    results = tmp_path / "r.md"
    results.write_text("Hand notes.\n")
    bench.write_table(results, "| a |\n")
    text = results.read_text()
    assert text.startswith(bench.START) and text.endswith("Hand notes.\n")


def test_benchmarks_md_degradation_figures_come_from_the_results_file() -> None:
    overview = (REPO / "BENCHMARKS.md").read_text()
    section = overview[overview.index("## Degradation"):]
    section = section[: section.index("\n## ", 1)]
    results = (BENCH / "results_degradation.md").read_text()
    assert _table_rows(section) == _table_rows(results)
    assert "bench/bench_degradation.py" in section and (BENCH / "bench_degradation.py").is_file()
