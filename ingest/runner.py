"""Running batches: one batch with its bookkeeping (shared by the Celery task and the embedded mode).

:func:`execute_batch` is what a task body calls: run the pipeline, turn a non-transient crash into per-item
failures (so a bad batch never blocks the job nor loops forever), and complete the batch in the job's ledger.
Transient errors (:data:`TRANSIENT`) propagate so the caller retries the whole batch with back-off.
:func:`run_embedded` runs a job's batches in the calling process with the same retry policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from ingest.context import IngestContext
from ingest.errors import TransientError
from ingest.jobs import BatchOutcome, Failure, JobStatus, complete_batch, job_status, mark_running
from retrieval.models import EncoderVersion, IngestJob

logger = logging.getLogger(__name__)


def _transient_types() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    types: list[type[BaseException]] = [
        TransientError,
        OperationalError,
        InterfaceError,
        DisconnectionError,
        ConnectionError,
        TimeoutError,
    ]
    # redis and qdrant-client are hard dependencies: their connection errors are transient too.
    from qdrant_client.http.exceptions import ResponseHandlingException
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    types += [RedisConnectionError, RedisTimeoutError, ResponseHandlingException]
    return tuple(types)


#: Errors that mean "a service is unavailable right now": retry the batch with back-off.
TRANSIENT: tuple[type[BaseException], ...] = _transient_types()


def _items_of(payload: dict[str, Any]) -> list[str]:
    kind = payload.get("kind")
    if kind == "images":
        return [str(i["path"]) for i in payload["items"]]
    if kind == "tiles":
        return [f"{payload['slide_path']}@{t[0]}:{t[1]},{t[2]}+{t[3]}" for t in payload["tiles"]]
    if kind == "reembed":
        return [f"image {i}" for i in payload["image_ids"]]
    return [f"batch of kind {kind!r}"]


def finish_reembed(job: IngestJob, session: Session, ctx: IngestContext) -> None:
    """When a re-embedding completes without failures, make its encoder version the active one."""
    from retrieval.catalog import activate_encoder

    if job.kind != "reembed":
        return
    request = (job.sources or [{}])[0]
    if not request.get("activate", True):
        return
    if job.failed:
        job.status = "failed"
        job.error = f"{job.failed} image(s) could not be re-embedded: the active encoder was NOT switched"
        return
    version = session.get(EncoderVersion, job.encoder_version_id)
    assert version is not None
    with ctx.store() as store:
        activate_encoder(version, session=session, store=store)
    logger.info("re-embedding job %d complete: encoder %s is now active", job.id, version.name)


def execute_batch(ctx: IngestContext, job_id: int, batch_index: int, payload: dict[str, Any]) -> BatchOutcome:
    """Run one batch and record it in the job exactly once.

    Raises:
        any of :data:`TRANSIENT`: retry later (nothing was recorded in the ledger).
    """
    from ingest.pipeline import run_batch

    with ctx.sessions() as session:
        if session.get(IngestJob, job_id) is None:
            # The job was deleted: acknowledge and drop the message instead of re-delivering it forever.
            logger.warning("job %d no longer exists: batch %d dropped", job_id, batch_index)
            return BatchOutcome()
        mark_running(job_id, session=session)
    try:
        outcome = run_batch(ctx, job_id, payload)
    except TRANSIENT:
        raise
    except Exception as exc:  # noqa: BLE001 - a permanent, unexpected error: fail the batch's items, go on
        logger.exception("job %d batch %d failed permanently", job_id, batch_index)
        reason = f"{type(exc).__name__}: {exc}"
        outcome = BatchOutcome(failures=[Failure(src, "embed", reason) for src in _items_of(payload)])
    with ctx.sessions() as session:
        complete_batch(
            job_id, batch_index, outcome, session=session, on_finish=lambda job, s: finish_reembed(job, s, ctx)
        )
    return outcome


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential back-off delay in seconds for the n-th retry (0-based)."""
    return float(min(cap, base * (2**attempt)))


def run_embedded(
    ctx: IngestContext,
    job_id: int,
    batches: Sequence[dict[str, Any]],
    *,
    progress: Callable[[JobStatus], None] | None = None,
    max_attempts: int = 8,
) -> JobStatus:
    """Run a job's batches in this process (no broker), retrying transient errors with back-off.

    Args:
        ctx: the process's ingest context.
        job_id: the job.
        batches: its batch payloads, in order.
        progress: called with the job status after each batch.
        max_attempts: attempts per batch before the transient error is raised.
    """
    if progress is not None:
        with ctx.sessions() as session:
            progress(job_status(job_id, session=session, max_failures=0))
    for index, payload in enumerate(batches):
        for attempt in range(max_attempts):
            try:
                execute_batch(ctx, job_id, index, payload)
                break
            except TRANSIENT as exc:
                if attempt + 1 == max_attempts:
                    raise
                delay = backoff(attempt)
                logger.warning("job %d batch %d: %s; retrying in %.1fs", job_id, index, exc, delay)
                time.sleep(delay)
        if progress is not None:
            with ctx.sessions() as session:
                progress(job_status(job_id, session=session, max_failures=0))
    with ctx.sessions() as session:
        return job_status(job_id, session=session)
