"""Shared fixtures: shipped sample paths, throwaway Redis / PostgreSQL servers, GPU skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import PostgresServer, postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The shipped Kather 2016 sample: 8 class folders x 8 real H&E images."""
    return SAMPLES / "kather2016"


@pytest.fixture(scope="session")
def sample_slide() -> Path:
    """The shipped real Aperio slide (CMU-1-Small-Region, 2220x2967)."""
    return SAMPLES / "slides" / "cmu_small_region.svs"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | str]:
    """A PostgreSQL server for the session: throwaway unless HISTOQUERY_TEST_POSTGRES_URL is set."""
    url = os.environ.get("HISTOQUERY_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer | str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    name = f"hq_{uuid.uuid4().hex[:12]}"
    if isinstance(postgres, str):
        import psycopg
        from sqlalchemy.engine import make_url

        base = make_url(postgres)
        with psycopg.connect(
            host=base.host, port=base.port, user=base.username, dbname=base.database, autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return base.set(database=name).render_as_string(hide_password=False)
    return postgres.create_database(name)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free port (or HISTOQUERY_TEST_REDIS_URL)."""
    url = os.environ.get("HISTOQUERY_TEST_REDIS_URL")
    if url:
        yield url
        return
    with redis_server() as server:
        yield server.url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
