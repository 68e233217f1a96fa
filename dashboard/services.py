"""Heavy shared objects of the dashboard, created once per server process (``st.cache_resource``).

Everything is built from :func:`retrieval.settings.get_settings` (``HISTOQUERY_*`` environment / ``.env``), so the
same dashboard runs on the embedded default (SQLite + embedded Qdrant) and on the scaled-out deployment
(PostgreSQL + Qdrant server). The cache key is the settings' JSON, so two settings never share objects.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from retrieval.settings import Settings, get_settings

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """Database engine + sessions and the vector store for one settings object."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: Any
    key: str = field(default="")

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A short-lived read session (closed on exit)."""
        with self.sessions() as session:
            yield session


def settings_key(settings: Settings) -> str:
    """A stable string key of the settings (used as the cache key of every cached object)."""
    return settings.model_dump_json()


def current_settings() -> Settings:
    """The settings from the environment / ``.env`` (cheap to build; the heavy objects are cached by their key)."""
    return get_settings()


@st.cache_resource(show_spinner="Opening the database and the vector store ...")
def _services(key: str) -> Services:
    from retrieval.db import engine_for, ensure_schema, session_factory
    from retrieval.store import open_vector_store

    settings = Settings.model_validate_json(key)
    ensure_schema(settings.db_url)  # an empty database is created; one behind the code is refused with the fix
    engine = engine_for(settings.db_url)
    store = open_vector_store(settings)
    logger.info("dashboard services ready: %s, %s backend", engine.url.get_backend_name(), settings.vector_backend)
    return Services(settings=settings, engine=engine, sessions=session_factory(engine), store=store, key=key)


def services_by_key(key: str) -> Services:
    """The shared :class:`Services` of a settings key (:func:`settings_key`): what cached query functions, which take
    the key as their first (hashed) argument, open."""
    return _services(key)


def services(settings: Settings | None = None) -> Services:
    """The shared :class:`Services` for ``settings`` (default: :func:`current_settings`)."""
    return _services(settings_key(settings or current_settings()))


@st.cache_resource(show_spinner="Loading the encoder ...", max_entries=4)
def _encoder(key: str, checkpoint_path: str, checkpoint_sha256: str) -> Any:
    """The encoder of a checkpoint, loaded once per process (only needed to embed uploaded images)."""
    from retrieval.api import load_encoder

    settings = Settings.model_validate_json(key)
    device = None if settings.device == "auto" else settings.device
    return load_encoder(checkpoint_path, device=device, expected_sha256=checkpoint_sha256)


@contextlib.contextmanager
def open_retrieval(key: str, version_name: str | None = None, need_encoder: bool = False) -> Iterator[Any]:
    """A :class:`retrieval.api.Retrieval` on a fresh session (sessions are not shared between browser tabs).

    The vector store and the encoder are the process-wide cached ones.

    Args:
        key: settings key (:func:`settings_key`).
        version_name: encoder version; None = the active one.
        need_encoder: load (once) and attach the encoder, for queries that are images rather than stored ids.
    """
    from retrieval.api import Retrieval
    from retrieval.catalog import active_encoder_version

    svc = _services(key)
    with svc.session() as session:
        version = active_encoder_version(session=session, name=version_name or svc.settings.active_encoder)
        encoder = _encoder(key, version.checkpoint_path, version.checkpoint_sha256) if need_encoder else None
        yield Retrieval(
            session=session,
            store=svc.store,
            version=version,
            encoder=encoder,
            device=None if svc.settings.device == "auto" else svc.settings.device,
            max_image_pixels=svc.settings.max_image_pixels,
        )


def reset_store() -> None:
    """Close and forget the cached services and encoders (next access reopens them).

    The embedded vector store loads its shards once per process; after another process (the CLI, an in-process
    ingestion job) wrote new vectors, reopening makes them searchable.
    """
    key = settings_key(current_settings())
    try:
        svc = _services(key)
        svc.store.close()  # the engine is the process's one for this database (retrieval.db.engine_for): kept
    except Exception as exc:  # noqa: BLE001 - closing a broken store must not stop the reset
        logger.warning("closing the dashboard services failed (reopening anyway): %s", exc)
    _services.clear()
    st.cache_data.clear()
