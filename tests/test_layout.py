"""The README's map: each package imports only the packages it may (../shared/GUIDE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"training", "retrieval", "ingest", "dashboard", "cli", "tests", "benchmarks"}
MAY_IMPORT = {
    "training": set(),
    "retrieval": {"training"},
    "ingest": {"training", "retrieval"},
    "dashboard": {"retrieval", "ingest"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of our packages imported anywhere in ``path`` (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_package_imports_only_what_the_map_allows(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    offending = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - allowed)
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_packages(path) - allowed
    }
    assert offending == {}, f"{package}/ may import only {sorted(allowed)}: {offending}"


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.encoder import Encoder\n    import retrieval.api\n")
    assert imported_packages(module) == {"training", "retrieval"}


def module_graph(package: str) -> dict[str, set[str]]:
    """``module -> modules of the same package it imports`` (also inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith(f"{package}."))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"{package}."):
                deps.add(node.module)
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep in graph and dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_ingest_imports_flow_one_way() -> None:
    """Inside ``ingest`` the data flows one way (leaves -> pipeline -> runner -> tasks / celery_app -> service).

    Planted bug: ``pipeline`` importing ``image_model_input`` from ``ingest.service`` again fails this test.
    """
    assert find_cycle(module_graph("ingest")) is None, " -> ".join(find_cycle(module_graph("ingest")) or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
