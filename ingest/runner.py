"""Running batches: one batch with its bookkeeping (shared by the Celery task and the embedded mode).

:func:`execute_batch` is what a task body calls: run the pipeline, turn a non-transient crash into per-item
failures (so a bad batch never blocks the job nor loops forever), and complete the batch in the job's ledger.
Transient errors (:func:`ingest.errors.transient_errors`) propagate so the caller retries the whole batch with back-off.
:func:`run_embedded` runs a job's batches in the calling process with the same retry policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ingest.context import IngestContext
from ingest.errors import IngestError, transient_errors
from ingest.jobs import (
    CANCELLED,
    HEARTBEAT_S,
    BatchOutcome,
    Failure,
    JobStatus,
    claim_job,
    complete_batch,
    heartbeat,
    job_request,
    job_status,
    mark_running,
)
from ingest.payloads import BatchPayload
from retrieval.models import EncoderVersion, IngestJob

if TYPE_CHECKING:
    from retrieval.store.base import VectorStore

logger = logging.getLogger(__name__)


def _items_of(payload: BatchPayload) -> list[str]:
    if payload["kind"] == "images":
        return [str(i["path"]) for i in payload["items"]]
    if payload["kind"] == "tiles":
        return [f"{payload['slide_path']}@{t[0]}:{t[1]},{t[2]}+{t[3]}" for t in payload["tiles"]]
    if payload["kind"] == "reembed":
        return [f"image {i}" for i in payload["image_ids"]]
    return [f"batch of kind {payload.get('kind')!r}"]  # a message from another version: never crash on it


def finish_reembed(
    job: IngestJob, *, session: Session, open_store: Callable[[], AbstractContextManager[VectorStore]]
) -> None:
    """When a re-embedding completes without failures, make its encoder version the active one.

    Called when a job's last batch is recorded (by :func:`execute_batch`) and by the service for a re-embedding
    with nothing to embed; both pass how they reach the vector store, which is opened only to switch the alias.

    Args:
        job: the job that just completed (any kind: only a re-embedding asking for activation does anything).
        session: the open session, inside the transaction that records the completion.
        open_store: opens the vector store for the switch (a context manager factory, e.g. ``ctx.store``).
    """
    from retrieval.catalog import activate_encoder

    if job.kind != "reembed":
        return
    if not job_request(job).get("activate", True):
        return
    if job.failed:
        job.status = "failed"
        job.error = f"{job.failed} image(s) could not be re-embedded: the active encoder was NOT switched"
        return
    version = session.get(EncoderVersion, job.encoder_version_id)
    if version is None:
        raise IngestError(f"job {job.id}: its encoder version {job.encoder_version_id} no longer exists")
    with open_store() as store:
        activate_encoder(version, session=session, store=store)
    logger.info("re-embedding job %d complete: encoder %s is now active", job.id, version.name)


def execute_batch(ctx: IngestContext, job_id: int, batch_index: int, payload: BatchPayload) -> BatchOutcome:
    """Run one batch and record it in the job exactly once.

    Raises:
        any of :func:`ingest.errors.transient_errors`: retry later (nothing was recorded in the ledger).
    """
    from ingest.pipeline import run_batch

    with ctx.sessions() as session:
        job = session.get(IngestJob, job_id)
        if job is None:
            # The job was deleted: acknowledge and drop the message instead of re-delivering it forever.
            logger.warning("job %d no longer exists: batch %d dropped", job_id, batch_index)
            return BatchOutcome()
        if job.status == "failed" and job.error == CANCELLED:
            logger.info("job %d was cancelled: batch %d dropped", job_id, batch_index)
            return BatchOutcome()
        mark_running(job_id, session=session)
    try:
        outcome = run_batch(ctx, job_id, payload)
    except transient_errors():
        raise
    except Exception as exc:  # noqa: BLE001 - a permanent, unexpected error: fail the batch's items, go on
        logger.exception("job %d batch %d failed permanently", job_id, batch_index)
        reason = f"{type(exc).__name__}: {exc}"
        outcome = BatchOutcome(failures=[Failure(src, "embed", reason) for src in _items_of(payload)])

    def on_finish(job: IngestJob, session: Session) -> None:
        finish_reembed(job, session=session, open_store=ctx.store)

    try:
        with ctx.commit_lock, ctx.sessions() as session:
            complete_batch(job_id, batch_index, outcome, session=session, on_finish=on_finish)
    except transient_errors():
        raise
    except Exception as exc:  # noqa: BLE001 - recording must never leave the job hanging: record the counts alone
        logger.exception("job %d batch %d: its failures could not be recorded", job_id, batch_index)
        note = f"its failure could not be recorded ({type(exc).__name__}); see the worker log"
        outcome = BatchOutcome(
            done=outcome.done,
            skipped=outcome.skipped,
            failures=[Failure(f"batch {batch_index} item", "store", note)] * outcome.failed,
        )
        with ctx.commit_lock, ctx.sessions() as session:
            complete_batch(job_id, batch_index, outcome, session=session, on_finish=on_finish)
    return outcome


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential back-off delay in seconds for the n-th retry (0-based)."""
    return float(min(cap, base * (2**attempt)))


def _execute_with_retries(
    ctx: IngestContext, job_id: int, index: int, payload: BatchPayload, max_attempts: int
) -> None:
    for attempt in range(max_attempts):
        try:
            execute_batch(ctx, job_id, index, payload)
            return
        except transient_errors() as exc:
            if attempt + 1 == max_attempts:
                raise
            delay = backoff(attempt)
            logger.warning("job %d batch %d: %s; retrying in %.1fs", job_id, index, exc, delay)
            time.sleep(delay)


def run_embedded(
    ctx: IngestContext,
    job_id: int,
    batches: Sequence[BatchPayload],
    *,
    progress: Callable[[JobStatus], None] | None = None,
    max_attempts: int = 8,
    in_flight: int = 2,
    indices: Sequence[int] | None = None,
) -> JobStatus:
    """Run a job's batches in this process (no broker), retrying transient errors with back-off.

    Up to ``in_flight`` batches run at once on threads: while one batch writes its rows and vectors (holding
    ``ctx.commit_lock``), the next one is hashed, decoded and embedded (``ctx.embed_lock``), so the encoder does not
    sit idle during commits. Each batch is still stored and recorded exactly once (the same code as a Celery task).

    Args:
        ctx: the process's ingest context.
        job_id: the job.
        batches: its batch payloads, in order.
        progress: called with the job status after each batch (in batch order).
        max_attempts: attempts per batch before the transient error is raised.
        in_flight: batches running at once (1 = strictly one after another).
        indices: the job's batch index of each payload (default ``0..N-1``; a resumed job runs only its missing
            batches).
    """

    def report() -> None:
        if progress is not None:
            with ctx.sessions() as session:
                progress(job_status(job_id, session=session, max_failures=0))

    with ctx.sessions() as session:
        claim_job(job_id, session=session)  # this process owns the job: if it dies, the job shows 'interrupted'
    beating = threading.Event()

    def beat() -> None:
        while not beating.wait(HEARTBEAT_S):
            try:
                with ctx.sessions() as session:
                    heartbeat(job_id, session=session)
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next one; never stop the job
                logger.warning("job %d: heartbeat not recorded", job_id, exc_info=True)

    beater = threading.Thread(target=beat, name=f"hq-heartbeat-{job_id}", daemon=True)
    beater.start()
    try:
        report()
        _run_batches(ctx, job_id, batches, list(indices) if indices is not None else None, report, max_attempts,
                     in_flight)  # fmt: skip
    finally:
        beating.set()
        beater.join()
    with ctx.sessions() as session:
        return job_status(job_id, session=session)


def _run_batches(
    ctx: IngestContext,
    job_id: int,
    batches: Sequence[BatchPayload],
    indices: list[int] | None,
    report: Callable[[], None],
    max_attempts: int,
    in_flight: int,
) -> None:
    with ThreadPoolExecutor(max(1, in_flight), thread_name_prefix="hq-batch") as runner:
        running: deque[Future[None]] = deque()
        try:
            for position, payload in enumerate(batches):
                index = indices[position] if indices is not None else position
                running.append(runner.submit(_execute_with_retries, ctx, job_id, index, payload, max_attempts))
                while len(running) >= max(1, in_flight):
                    running.popleft().result()
                    report()
            while running:
                running.popleft().result()
                report()
        except BaseException:
            for future in running:
                future.cancel()  # not started yet: never run; the ones running finish their batch
            raise
