"""An embedded store held by another opener: ingestion waits and retries, then fails the job with one message."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import ingest.service as service
from ingest.errors import IngestError
from ingest.service import job_status, list_jobs, resume_job, submit_ingest
from retrieval.settings import Settings
from tests.support.ingest_inputs import he_image


def _hold_store(settings: Settings) -> object:
    """Open the embedded store and its active collection, as a dashboard in another process would."""
    from retrieval.catalog import active_encoder_version
    from retrieval.db import make_engine, session_factory
    from retrieval.store import open_vector_store

    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        version = active_encoder_version(session=session)
        collection, dim = version.collection, version.dim
    engine.dispose()
    holder = open_vector_store(settings)
    holder.ensure_collection(collection, dim)  # loads the collection: its lock is now held
    return holder


def _images(folder: Path, n: int = 4) -> Path:
    folder.mkdir()
    for i in range(n):
        he_image(64, i).save(folder / f"img_{i}.png")
    return folder


def test_still_held_after_the_retries_fails_the_job_with_one_clear_message(
    embedded_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "EMBEDDED_ATTEMPTS", 2)
    holder = _hold_store(embedded_settings)
    try:
        with pytest.raises(IngestError, match="open in another process"):
            submit_ingest([_images(tmp_path / "data")], settings=embedded_settings, dataset="d")
    finally:
        holder.close()  # type: ignore[attr-defined]
    job = list_jobs(settings=embedded_settings)[0]
    assert job.status == "failed" and "open in another process" in (job.error or "")
    assert job.failed == 0  # no item was marked failed with a traceback
    resume_job(job.id, settings=embedded_settings)  # the store is free again: resuming stores everything
    after = job_status(job.id, settings=embedded_settings)
    assert (after.status, after.done, after.failed) == ("done", 4, 0)


def test_released_during_the_retries_the_job_just_waits(embedded_settings: Settings, tmp_path: Path) -> None:
    holder = _hold_store(embedded_settings)
    timer = threading.Timer(2.0, holder.close)  # type: ignore[attr-defined]
    timer.start()
    try:
        job = submit_ingest([_images(tmp_path / "data")], settings=embedded_settings, dataset="d")
    finally:
        timer.join()
    status = job_status(job, settings=embedded_settings)
    assert (status.status, status.done, status.failed) == ("done", 4, 0)
