"""Two workers running the same batch at the same moment (a double delivery) on PostgreSQL: stored once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ingest.context import IngestContext
from ingest.errors import transient_errors
from ingest.jobs import create_job, job_status
from ingest.planning import plan_ingest
from ingest.runner import execute_batch
from retrieval.catalog import active_encoder_version, get_or_create_dataset
from retrieval.settings import get_settings
from tests.ingest.conftest import register_active
from tests.support.ingest_checks import stored
from tests.support.ingest_inputs import he_image


def test_same_batch_twice_concurrently_is_stored_once(postgres_url: str, tmp_path: Path,
                                                      tiny_checkpoint: Path) -> None:  # fmt: skip
    settings = get_settings(home=tmp_path / "home", database_url=postgres_url, broker_url=None, device="cpu")
    register_active(settings, tiny_checkpoint)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        image = he_image(64, i)
        image.putpixel((0, 0), (i, 1, 2))
        image.save(data / f"{i}.png")
    contexts = [IngestContext(settings, hold_store=False, decode_threads=2) for _ in range(2)]
    with contexts[0].sessions() as session:
        version = active_encoder_version(session=session)
        ds = get_or_create_dataset("race", session=session)
        plan = plan_ingest([data], session=session, dataset_id=ds.id, resolve_dataset=lambda n: ds.id, batch_size=64)
        job = create_job(session=session, kind="ingest", request={}, batches=len(plan.batches), total=plan.total,
                         dataset_id=ds.id, encoder_version_id=version.id)  # fmt: skip
    assert len(plan.batches) == 1
    for ctx in contexts:
        ctx.encoder(version)  # load first, so both start the batch together
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def deliver(ctx: IngestContext) -> None:
        barrier.wait()
        for _attempt in range(5):
            try:
                execute_batch(ctx, job.id, 0, plan.batches[0])
                return
            except transient_errors():
                time.sleep(0.2)  # e.g. the other delivery inserted the same embeddings first
            except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
                errors.append(exc)
                return

    threads = [threading.Thread(target=deliver, args=(ctx,)) for ctx in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    with contexts[0].sessions() as session:
        status = job_status(job.id, session=session)
    for ctx in contexts:
        ctx.close()
    assert (status.status, status.done, status.failed, status.skipped, status.batches_done) == ("done", 12, 0, 0, 1)
    s = stored(settings, "race")
    assert s.images == s.embeddings == s.points == 12 and s.drift_free
