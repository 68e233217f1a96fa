"""The README's map: each package imports only the packages it may (../shared/GUIDE.md)."""

from __future__ import annotations

import ast
import sys
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
    """``module -> modules of the same package it imports``, also inside functions and under ``TYPE_CHECKING``.

    ``from pkg.mod import name`` counts as an edge to ``pkg.mod`` (and to ``pkg.mod.name`` when that is a module);
    ``from pkg import mod`` and ``import pkg.mod`` count as edges to ``pkg.mod``. Function-level imports count
    because that is how the circles hid: they do not fail at import time, yet they tie the modules together.
    """
    paths = [p for p in sorted((ROOT / package).rglob("*.py")) if "migrations" not in p.parts]
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = {t for t in targets if t in names and t != name and t != package}
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


PACKAGES = ("training", "retrieval", "ingest", "dashboard", "cli")


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way_inside_each_package(package: str) -> None:
    """Inside each package the modules form no import circle (../shared/GUIDE.md, *One home per concern*).

    Planted bugs: ``ingest.pipeline`` importing ``image_model_input`` from ``ingest.service`` again fails this
    test for ingest; ``ingest.runner`` importing ``ingest.service`` inside a function fails it too.
    """
    cycle = find_cycle(module_graph(package))
    assert cycle is None, f"import circle inside {package}/: " + " -> ".join(cycle or [])


def test_nothing_in_ingest_imports_the_service() -> None:
    """``ingest.service`` is the top of ingest (the CLI's and dashboard's entry point): nothing below calls up."""
    graph = module_graph("ingest")
    callers = sorted(name for name, deps in graph.items() if "ingest.service" in deps)
    assert callers == []


def test_the_graph_sees_imports_inside_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("import pkg.c\n")
    (pkg / "c.py").write_text("def g():\n    from pkg.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = module_graph("pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_one_list_of_image_suffixes() -> None:
    """The image suffixes live in ``training.pixels`` only; every other module imports them (a file one part accepts
    must not be ignored by another). Planted bug: a local ``(".png", ".jpg", ".jpeg", ...)`` in ``cli/demo.py`` fails.
    """
    copies = [
        str(path.relative_to(ROOT))
        for package in (*PACKAGES, "benchmarks")
        for path in sorted((ROOT / package).rglob("*.py"))
        if '".jpeg"' in path.read_text() and path != ROOT / "training" / "pixels.py"
    ]
    assert copies == []
