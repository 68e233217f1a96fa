"""Fixtures for ingest tests: a tiny untrained encoder and embedded-mode settings with it registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.settings import Settings, get_settings


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 / 64 px untrained checkpoint (fast on CPU)."""
    from training.testing import make_untrained_checkpoint

    return make_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", backbone="resnet18", image_size=64)


def register_active(settings: Settings, checkpoint: Path, name: str = "tiny") -> None:
    """Migrate the database and register ``checkpoint`` as the active encoder version."""
    from retrieval.catalog import register_encoder
    from retrieval.db import make_engine, migrate, session_factory
    from retrieval.store import open_vector_store

    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    store = open_vector_store(settings)
    try:
        with session_factory(engine)() as session:
            register_encoder(checkpoint, session=session, store=store, name=name, activate=True)
    finally:
        store.close()
        engine.dispose()


@pytest.fixture
def embedded_settings(tmp_path: Path, tiny_checkpoint: Path) -> Settings:
    """Embedded default (SQLite + embedded Qdrant, no broker) under tmp_path, tiny encoder active."""
    settings = get_settings(home=tmp_path / "home", broker_url=None, ingest_batch_size=16, max_image_pixels=50_000_000)
    register_active(settings, tiny_checkpoint)
    return settings
