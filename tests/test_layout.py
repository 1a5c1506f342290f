"""The package's shape: no module imports another that imports it back (read from the source, so an import inside
a function counts too), and no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "eksft"
MAX_LINES = 400

#: Cycles still in the package, each as its sorted modules; the test fails on any other.
KNOWN_CYCLES: set[tuple[str, ...]] = set()  # none
#: Modules allowed over MAX_LINES for now.
KNOWN_LONG: set[str] = set()  # modules allowed over the limit (none)


def module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def imported(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules) -> list[str]:
    """The eksft modules one import statement of module ``name`` loads by name: ``from eksft.a import b`` gives
    ``eksft.a.b`` when b is a module, else ``eksft.a``; relative imports are resolved against ``name``."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            here = name.split(".") if is_package else name.split(".")[:-1]
            base = here[: len(here) - node.level + 1] + ([node.module] if node.module else [])
            module = ".".join(base)
        else:
            module = node.module or ""
        targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
    out = []
    for target in targets:
        while target not in modules and "." in target:  # eksft.a.b.attribute -> eksft.a.b
            target = target.rsplit(".", 1)[0]
        if target in modules and target != name:
            out.append(target)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the eksft modules it imports anywhere in its source (top level or inside a function)."""
    modules = module_files()
    graph = {}
    for name, (path, is_package) in modules.items():
        nodes = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
        graph[name] = {t for n in nodes for t in imported(name, is_package, n, modules)}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan), each as its sorted modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_and_relative_imports():
    """The reader itself: eksft.demo.run imports eksft.demo.selftrace inside run_seed, relatively."""
    graph = import_graph()
    assert "eksft.demo.selftrace" in graph["eksft.demo.run"]
    assert "eksft.demo.training" in graph["eksft.demo.selftrace"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}


def test_no_import_cycles_between_modules():
    found = cycles(import_graph())
    assert found - KNOWN_CYCLES == set(), "modules that import each other (directly or around a loop)"


def test_no_module_over_400_lines():
    lengths = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    long = {path: n for path, n in lengths.items() if n > MAX_LINES and path not in KNOWN_LONG}
    assert long == {}, f"split these by job (limit {MAX_LINES} lines)"
