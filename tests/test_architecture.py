"""The import rules of docs/architecture.md, checked by parsing every module's imports with ``ast``.

* no import cycles among magicbokeh modules (imports inside functions count: a lazy import is
  still a dependency; imports under ``if TYPE_CHECKING:`` do not);
* lower layers never import upper ones: the core never imports the front ends (app, cli,
  commands, ui), the request router (zerogpu, warmup), the app glue (app_settings, app_support)
  or the research tools (train, eval, data); gradio is imported only by ``magicbokeh.ui``;
* no module in magicbokeh/ is over 600 lines.

The checker itself is tested on small packages written to a temporary folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "magicbokeh"
MAX_LINES = 600

#: Layers above the core, by module prefix. The core is every other magicbokeh module.
FRONT_ENDS = ("magicbokeh.cli", "magicbokeh.commands", "magicbokeh.ui", "magicbokeh.__main__")
ROUTER = ("magicbokeh.zerogpu", "magicbokeh.warmup")
APP_GLUE = ("magicbokeh.app_settings", "magicbokeh.app_support")
TOOLS = ("magicbokeh.train", "magicbokeh.eval", "magicbokeh.data")
UPPER = FRONT_ENDS + ROUTER + APP_GLUE + TOOLS
#: What each upper layer may not import (besides the rule that nothing below imports it).
FORBIDDEN = {
    ROUTER: FRONT_ENDS + APP_GLUE + TOOLS,
    APP_GLUE: FRONT_ENDS + TOOLS,
    TOOLS: ("magicbokeh.cli", "magicbokeh.ui", "magicbokeh.__main__") + ROUTER + APP_GLUE,
}


def in_layer(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` (and outside names like ``gradio``) that ``module`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            # `from . import x` depends on the submodule x, not on the package's __init__.
            if not submodules or len(submodules) < len(node.names):
                found.add(target)
            found.update(submodules)
    found.discard(module)
    return found


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    files = module_files(root, package)
    known = set(files)
    return {m: imports_of(m, p, known) for m, p in files.items()}


def internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if d in graph} for m, deps in graph.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph = internal(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if not in_layer(module, UPPER) and in_layer(dep, UPPER):
                bad.append(f"core module {module} imports {dep}")
            if dep.split(".")[0] == "gradio" and not in_layer(module, ("magicbokeh.ui",)):
                bad.append(f"{module} imports gradio (only magicbokeh.ui may)")
            if dep == "app":
                bad.append(f"{module} imports the app")
            for layer, forbidden in FORBIDDEN.items():
                if in_layer(module, layer) and in_layer(dep, forbidden):
                    bad.append(f"{module} imports {dep} (a layer it may not use)")
    return bad


# ---------------------------------------------------------------------------------------------
# The checker on small packages with known answers
# ---------------------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_lazy_cycle_and_ignores_type_checking(tmp_path):
    root = _write(tmp_path, {
        "magicbokeh/__init__.py": "",
        "magicbokeh/a.py": "from .b import thing\n",
        "magicbokeh/b.py": "def f():\n    from .a import other\n",  # lazy, still a cycle
        "magicbokeh/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import T\n",
        "magicbokeh/d.py": "from . import c\n",
        "magicbokeh/pkg/__init__.py": "from .inner import x\n",
        "magicbokeh/pkg/inner.py": "from . import sibling\n",
        "magicbokeh/pkg/sibling.py": "",
    })
    graph = import_graph(root)
    assert graph["magicbokeh.a"] == {"magicbokeh.b"}
    assert graph["magicbokeh.c"] == {"typing"}
    assert graph["magicbokeh.d"] == {"magicbokeh.c"}
    assert graph["magicbokeh.pkg.inner"] == {"magicbokeh.pkg.sibling"}  # not the package itself
    assert find_cycles(graph) == [["magicbokeh.a", "magicbokeh.b"]]


def test_checker_flags_a_core_module_importing_upwards(tmp_path):
    root = _write(tmp_path, {
        "magicbokeh/__init__.py": "",
        "magicbokeh/pipeline.py": "def f():\n    from . import zerogpu\n",
        "magicbokeh/zerogpu.py": "import gradio as gr\nfrom .ui import views\n",
        "magicbokeh/ui/__init__.py": "",
        "magicbokeh/ui/views.py": "import gradio\nfrom ..pipeline import f\n",
    })
    bad = layer_violations(import_graph(root))
    assert "core module magicbokeh.pipeline imports magicbokeh.zerogpu" in bad
    assert "magicbokeh.zerogpu imports gradio (only magicbokeh.ui may)" in bad
    assert "magicbokeh.zerogpu imports magicbokeh.ui.views (a layer it may not use)" in bad
    assert not any(line.startswith("magicbokeh.ui.views") for line in bad)


# ---------------------------------------------------------------------------------------------
# The rules on the project
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_the_graph_sees_the_known_roads(graph):
    assert "magicbokeh.request" in graph["magicbokeh.pipeline"]
    assert "magicbokeh.pipeline" in graph["magicbokeh.zerogpu"]
    assert "magicbokeh.depth.sources" in graph["magicbokeh.depth.depth_anything"]


def test_no_import_cycles(graph):
    assert find_cycles(graph) == []


def test_lower_layers_never_import_upper_ones(graph):
    assert layer_violations(graph) == []


def test_the_app_is_the_only_importer_of_the_ui_outside_it(graph):
    importers = {m for m, deps in graph.items() if any(in_layer(d, ("magicbokeh.ui",)) for d in deps)}
    assert all(in_layer(m, ("magicbokeh.ui",)) for m in importers), importers
    app_imports = imports_of("app", ROOT / "app.py", set(graph))
    assert any(in_layer(d, ("magicbokeh.ui",)) for d in app_imports)


def test_no_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / PACKAGE).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (lines): {long}"
