"""Migrations create an empty database and upgrade one at the previous revision (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from retrieval.db import current_revision, head_revision, make_engine, migrate, session_factory
from retrieval.models import Base, Dataset, Image


def _schema_diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_empty_database_matches_models(db_url: str) -> None:
    assert current_revision(db_url) is None
    migrate(db_url)
    assert current_revision(db_url) == head_revision() == "0004"
    assert _schema_diff(db_url) == []
    migrate(db_url)  # idempotent on an up-to-date database
    assert current_revision(db_url) == "0004"


def test_upgrade_from_previous_revision_keeps_data(db_url: str) -> None:
    migrate(db_url, revision="0001")
    engine = make_engine(db_url)
    assert "ix_images_status" not in {ix["name"] for ix in inspect(engine).get_indexes("images")}
    with engine.begin() as conn:  # rows as an older release wrote them (no group column yet)
        conn.execute(text("INSERT INTO datasets (id, name) VALUES (1, 'old')"))
        conn.execute(
            text(
                "INSERT INTO slides (id, dataset_id, path, content_hash, mpp_source) "
                "VALUES (1, 1, '/s.svs', 's1', 'default')"
            )
        )
        rows = [
            (1, "h1", None, None),
            (2, "h2", 1, None),
            (3, "h3", None, '{"slide_name": "S-07", "scanner": "x"}'),
            (4, "h4", None, '{"patient": "P-3", "slide_name": "S-08"}'),
        ]
        for i, digest, slide, extra in rows:
            conn.execute(
                text(
                    "INSERT INTO images (id, dataset_id, content_hash, source_path, slide_id, label, extra, status) "
                    "VALUES (:i, 1, :h, '/a.png', :s, 'TUMOR', :e, 'pending')"
                ),
                {"i": i, "h": digest, "s": slide, "e": extra},
            )
    engine.dispose()

    migrate(db_url)

    engine = make_engine(db_url)
    assert "ix_images_status" in {ix["name"] for ix in inspect(engine).get_indexes("images")}
    with session_factory(engine)() as session:
        imgs = session.scalars(select(Image).order_by(Image.id)).all()
        assert (imgs[0].content_hash, imgs[0].label, imgs[0].status) == ("h1", "TUMOR", "pending")
        # 0003 backfills the group: the slide of a tile, a manifest's patient before its slide name
        assert [img.group for img in imgs] == [None, "slide:1", "S-07", "P-3"]
        assert session.execute(text("SELECT count(*) FROM datasets")).scalar_one() == 1
        assert session.scalar(select(Dataset.name)) == "old"
    engine.dispose()
    assert _schema_diff(db_url) == []


def test_migrate_works_outside_the_source_tree(tmp_path: Path) -> None:
    """The Alembic config ships inside the package: migrate() must not depend on the working directory."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code = f"from retrieval.db import migrate, current_revision; migrate({url!r}); print(current_revision({url!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0004"
