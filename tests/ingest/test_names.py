"""Odd file names never crash a batch, and recording a failure never fails."""

from __future__ import annotations

import os
from pathlib import Path

from ingest.jobs import Failure, create_job, job_status
from ingest.service import job_status as service_status
from ingest.service import submit_ingest
from retrieval.settings import Settings
from tests.support.ingest_checks import stored
from tests.support.ingest_inputs import he_image


def test_a_non_utf8_file_name_is_refused_alone_and_the_batch_goes_on(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(16):
        he_image(64, i).save(data / f"ok_{i:02d}.png")
    bad = os.path.join(os.fsencode(data), b"bad\xff\xfename.png")
    with open(bad, "wb") as fh:
        he_image(64, 99).save(fh, format="PNG")
    status = service_status(submit_ingest([data], settings=embedded_settings, dataset="d"), settings=embedded_settings)
    assert status.status == "done" and (status.done, status.failed) == (16, 1), status
    failure = status.failures[0]
    assert failure.source.endswith("bad\\xff\\xfename.png") and "not valid UTF-8" in failure.reason
    assert stored(embedded_settings, "d").done == 16


def test_recording_a_failure_never_fails_on_its_text(embedded_settings: Settings) -> None:
    from retrieval.db import make_engine, session_factory
    from retrieval.models import EncoderVersion

    engine = make_engine(embedded_settings.db_url)
    with session_factory(engine)() as session:
        version = session.query(EncoderVersion).one()
        odd = [
            Failure("/data/bad\udcff\udcfename.png", "read", "reason with \udcff"),
            Failure("/data/nul\x00.png", "decode", "NUL \x00 inside"),
            Failure("/data/lone\ud800.png", "no-such-stage", "x" * 10_000),
        ]
        job = create_job(
            session=session, kind="ingest", request={}, batches=1, total=3, dataset_id=None,
            encoder_version_id=version.id, failures=odd,
        )  # fmt: skip
        got = job_status(job.id, session=session).failures
    engine.dispose()
    assert [f.source for f in got] == ["/data/bad\\xff\\xfename.png", "/data/nul\\x00.png", "/data/lone\\ud800.png"]
    assert got[2].stage == "read" and len(got[2].reason) == 4000
