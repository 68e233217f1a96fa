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
