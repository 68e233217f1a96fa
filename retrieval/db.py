"""Database engine, sessions and migrations (SQLite file by default, PostgreSQL by URL)."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from retrieval.errors import MigrationError, SettingsError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``.

    SQLite gets foreign keys, WAL journaling and a busy timeout (several processes may write: CLI, workers,
    dashboard); its parent folder is created. PostgreSQL URLs ``postgresql://`` use psycopg 3.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///histoquery-data/histoquery.db`` or
            ``postgresql+psycopg://user:pw@host/db``.
        **kwargs: Passed to :func:`sqlalchemy.create_engine`.

    Raises:
        SettingsError: The URL cannot be parsed or names an unsupported driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        example = "sqlite:///histoquery-data/histoquery.db"
        raise SettingsError(f"bad database URL {url!r}: {exc}. Example: {example}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("pool_pre_ping", parsed.get_backend_name() != "sqlite")
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise SettingsError(f"cannot use database URL {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


#: The process's engines, one per database URL (most recently used last). Bounded: a process that opens many
#: databases in turn (a test run) disposes the oldest instead of keeping its idle connections open.
_ENGINES: OrderedDict[tuple[str, int], Engine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()
_MAX_ENGINES = 4


def engine_for(url: str) -> Engine:
    """The one engine of this process for ``url``: built on first use, then shared (its connection pool too).

    Every product code path (CLI, ingest service and workers, queries, dashboard, doctor, migrations) gets its
    engine here instead of building one per call: one pool per process and database, no engine built and disposed
    around each small query. Keyed on the process id as well, so a forked worker never uses connections it
    inherited from its parent. Do not ``dispose()`` it: it is shared.

    Raises:
        SettingsError: the URL cannot be parsed or names an unsupported driver (see :func:`make_engine`).
    """
    key = (url, os.getpid())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            _ENGINES.move_to_end(key)
            return engine
        engine = _ENGINES[key] = make_engine(url)
        while len(_ENGINES) > _MAX_ENGINES:
            (_, old_pid), old = _ENGINES.popitem(last=False)
            if old_pid == os.getpid():
                old.dispose()  # connections in use stay valid until returned; the engine itself stays usable
        return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine`` (objects stay usable after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    """The Alembic configuration for ``url``, pointing at the migrations shipped inside this package."""
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Create or upgrade the schema at ``url`` to ``revision`` (default: the newest) with Alembic.

    Safe to call on every start: an up-to-date database is left as it is.

    Raises:
        MigrationError: The database cannot be reached or a migration failed.
    """
    from alembic import command

    try:
        with engine_for(url).begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except OperationalError as exc:
        raise MigrationError(f"cannot reach database {_safe(url)}: {exc.orig}. Is the server running?") from exc
    except SQLAlchemyError as exc:
        raise MigrationError(f"migrating {_safe(url)} to {revision} failed: {exc}") from exc
    log.info("database %s at revision %s", _safe(url), revision)


def current_revision(url: str) -> str | None:
    """The Alembic revision the database at ``url`` is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped in ``retrieval/migrations/versions``."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def ensure_schema(url: str) -> None:
    """The one decision on the schema before a command writes (ingest, re-embed, the dashboard's start).

    - at the code's revision: nothing to do;
    - an empty database (the first run of the embedded default, a fresh server database): created at the newest
      revision, which is safe: there is nothing to change;
    - at an older revision: refused with the fix (``histoquery doctor --migrate``), never upgraded implicitly. An
      upgrade of a shared database is an operator's step (back up, stop the workers, migrate once), not a side
      effect of whichever worker or dashboard starts first;
    - at a revision this code does not know (a newer release wrote it): refused, upgrade HistoQuery instead.

    ``histoquery doctor --migrate`` (:func:`migrate`) and the demo's first-run setup are the places that upgrade.

    Raises:
        MigrationError: the schema is behind or ahead of this code (the message names the fix), or the database
            cannot be reached.
    """
    from alembic.script import ScriptDirectory

    try:
        current = current_revision(url)
    except OperationalError as exc:
        raise MigrationError(f"cannot reach database {_safe(url)}: {exc.orig}. Is the server running?") from exc
    head = head_revision()
    if current == head:
        return
    if current is None:
        if inspect(engine_for(url)).has_table("encoder_versions"):
            raise MigrationError(
                f"database {_safe(url)} has HistoQuery tables but no schema revision: it was not created by "
                "`histoquery doctor --migrate`; point HISTOQUERY_DATABASE_URL at a fresh database"
            )
        log.info("database %s is empty: creating the schema (first run)", _safe(url))
        migrate(url)
        return
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()}
    if current in known:
        raise MigrationError(
            f"database {_safe(url)} is at schema revision {current}, this version of HistoQuery needs {head}: "
            "back it up, stop the workers, then run `histoquery doctor --migrate` once"
        )
    raise MigrationError(
        f"database {_safe(url)} is at schema revision {current}, which this version of HistoQuery does not know "
        f"(it needs {head}): a newer release wrote it; upgrade HistoQuery"
    )


def require_schema(engine: Engine) -> None:
    """Raise a :class:`MigrationError` with the fix when the database has no HistoQuery schema."""
    if not inspect(engine).has_table("encoder_versions"):
        raise MigrationError(
            f"database {_safe(str(engine.url))} has no HistoQuery tables: run `histoquery doctor --migrate` "
            "or retrieval.db.migrate(url) first"
        )


def _safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<bad url>"
