"""The package's import graph: no cycle between its parts.

A part is a subpackage (``uacregistrant.store``) or a top-level module
(``uacregistrant.config``).  Every import counts, including those inside
functions, since a lazy import hides a dependency without removing it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import uacregistrant

ROOT = Path(uacregistrant.__file__).parent
PACKAGE = "uacregistrant"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, module: str) -> Iterator[str]:
    """Absolute names of what ``module`` (stored at ``path``) imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            # ``from pkg import sub`` may name a submodule.
            yield from (f"{target}.{alias.name}" for alias in node.names)


def _part(module: str) -> str | None:
    """The part a module belongs to, or None outside the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return PACKAGE
    return f"{PACKAGE}.{parts[1]}"


def import_graph() -> dict[str, set[str]]:
    """Part → the other parts it imports."""
    files = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        source = _part(module)
        edges = graph.setdefault(source, set())
        for target in _imported(path, module):
            # Only real modules count: ``from x import name`` also yields "x.name".
            if target in files:
                part = _part(target)
                if part is not None and part != source:
                    edges.add(part)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_walker_reads_relative_and_lazy_imports() -> None:
    graph = import_graph()
    # ``from .store import make_store``; ``from uacregistrant.sip.errors import ...``;
    # the stores' drivers are imported inside make_store.
    assert "uacregistrant.store" in graph["uacregistrant.service"]
    assert "uacregistrant.sip" in graph["uacregistrant.transport"]
    assert "uacregistrant.registrant" in graph["uacregistrant.store"]


def test_no_import_cycle_between_parts() -> None:
    assert cycles(import_graph()) == []
