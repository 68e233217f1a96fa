"""One engine per process and database URL (retrieval.db.engine_for), used by every product code path."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from retrieval import db


def test_one_engine_per_url_and_it_stays_usable(tmp_path: Path) -> None:
    """Planted bug: ``engine_for`` building a new engine on each call (no cache) fails this test."""
    url_a, url_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    a = db.engine_for(url_a)
    assert db.engine_for(url_a) is a and db.engine_for(url_b) is not a
    with a.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1


def test_the_cache_is_bounded_and_an_evicted_engine_still_works(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(db._MAX_ENGINES + 2)]
    first = db.engine_for(urls[0])
    for url in urls[1:]:
        db.engine_for(url)
    assert len([key for key in db._ENGINES if key[0] in urls]) == db._MAX_ENGINES
    assert db.engine_for(urls[0]) is not first  # evicted (disposed), then built again
    with first.connect() as conn:  # a caller still holding the evicted engine is not broken
        assert conn.execute(text("select 1")).scalar() == 1


def test_ingest_and_queries_share_the_process_engine(tmp_path: Path) -> None:
    from ingest.context import IngestContext
    from retrieval.settings import get_settings

    settings = get_settings(home=tmp_path / "h", broker_url=None)
    db.migrate(settings.db_url)
    ctx = IngestContext(settings)
    try:
        assert ctx.engine is db.engine_for(settings.db_url)
    finally:
        ctx.close()
    with db.engine_for(settings.db_url).connect() as conn:  # closing the context left the shared engine working
        assert conn.execute(text("select count(*) from encoder_versions")).scalar() == 0


def test_ensure_schema_creates_an_empty_database_and_refuses_one_behind(tmp_path: Path) -> None:
    """One place decides (``ensure_schema``): an empty database is created, one behind the code is refused with the
    fix and left as it is (upgrades are ``histoquery doctor --migrate``'s), an unknown revision is refused.

    Planted bug: ``ensure_schema`` calling ``migrate`` for a database behind the code (the old implicit upgrade)
    fails this test.
    """
    import pytest

    from retrieval.errors import MigrationError

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    db.ensure_schema(fresh)
    assert db.current_revision(fresh) == db.head_revision()
    db.ensure_schema(fresh)  # up to date: nothing to do

    old = f"sqlite:///{tmp_path / 'old.db'}"
    db.migrate(old, revision="0003")
    with pytest.raises(MigrationError, match=r"revision 0003, .* needs 0004: .*`histoquery doctor --migrate`"):
        db.ensure_schema(old)
    assert db.current_revision(old) == "0003"

    ahead = f"sqlite:///{tmp_path / 'ahead.db'}"
    db.migrate(ahead)
    with db.engine_for(ahead).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(MigrationError, match="does not know .* upgrade HistoQuery"):
        db.ensure_schema(ahead)
