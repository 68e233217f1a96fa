"""The throwaway servers the other tests rely on really start and answer."""

from __future__ import annotations

import psycopg
import redis
from sqlalchemy.engine import make_url

from retrieval.settings import get_settings


def test_redis_fixture_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("hq-test", "1")
    assert client.get("hq-test") == b"1"


def test_postgres_fixture_gives_empty_database(postgres_url: str) -> None:
    url = make_url(postgres_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        tables = conn.execute("select count(*) from information_schema.tables where table_schema='public'")
        assert tables.fetchone() == (0,)


def test_settings_defaults_are_embedded(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HISTOQUERY_DATABASE_URL", raising=False)
    settings = get_settings(home=tmp_path)
    assert settings.db_url.startswith("sqlite:///") and settings.db_url.endswith("histoquery.db")
    assert settings.qdrant_path == tmp_path / "qdrant"
    assert settings.broker_url is None


def test_settings_from_env(monkeypatch) -> None:
    monkeypatch.setenv("HISTOQUERY_BROKER_URL", "redis://example:6379/0")
    monkeypatch.setenv("HISTOQUERY_INGEST_BATCH_SIZE", "128")
    settings = get_settings()
    assert settings.broker_url == "redis://example:6379/0"
    assert settings.ingest_batch_size == 128
