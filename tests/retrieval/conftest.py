"""Retrieval fixtures: a migrated database (SQLite or PostgreSQL) and an embedded Qdrant store in tmp dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.retrieval_factory import Catalog, make_catalog


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: SQLite file, or a new database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hq.db'}"


@pytest.fixture
def catalog(sqlite_url: str, tmp_path: Path) -> Iterator[Catalog]:
    """SQLite + embedded Qdrant with an active 16-d fake encoder version."""
    cat = make_catalog(sqlite_url, tmp_path / "qdrant")
    yield cat
    cat.close()


@pytest.fixture
def any_catalog(db_url: str, tmp_path: Path) -> Iterator[Catalog]:
    """Like ``catalog`` on SQLite and on PostgreSQL."""
    cat = make_catalog(db_url, tmp_path / "qdrant")
    yield cat
    cat.close()
