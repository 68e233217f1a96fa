"""Job bookkeeping in SQL: create a job, record failures, complete batches exactly once, report status.

A job row keeps, in ``sources``, two JSON objects: ``[request, ledger]``. ``request`` is what was asked (inputs,
manifest, options); ``ledger`` is ``{"batches": N, "completed": {"<index>": [done, failed, skipped]}}``. A batch
is completed in one transaction that locks the job row, checks the ledger, adds its failures and counters and
records itself: a batch delivered twice (worker killed after storing, before acknowledging) counts once.

A job run in-process (embedded mode) records its owner in the ledger, ``"owner": {"pid", "host", "heartbeat"}``,
and beats every :data:`HEARTBEAT_S` seconds. A queued / running job whose owner is gone (its process no longer
exists on this host, or no heartbeat for :data:`STALE_S` seconds) is reported as ``interrupted``; it can be
resumed (``histoquery jobs --resume``) or cancelled (``--cancel``). A cancelled job is ``failed`` with
:data:`CANCELLED` as its error; batches of a cancelled job are dropped, not run.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from ingest.errors import JobNotFoundError
from ingest.paths import display_path
from ingest.payloads import JobRequest, Ledger, Owner
from retrieval.models import FAILURE_STAGES, Dataset, EncoderVersion, IngestFailure, IngestJob, utcnow

logger = logging.getLogger(__name__)

#: Seconds between an in-process job's heartbeats.
HEARTBEAT_S = 10.0
#: An owner without a heartbeat for this long is gone (owners on other hosts, or a reused pid).
STALE_S = 120.0
#: The error of a job cancelled by the user.
CANCELLED = "cancelled by the user (histoquery jobs --cancel)"


@dataclass(frozen=True)
class Failure:
    """One failed source: a file, a manifest row, a slide or a tile."""

    source: str
    stage: str
    reason: str


@dataclass
class BatchOutcome:
    """What one batch did."""

    done: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


@dataclass(frozen=True)
class JobStatus:
    """A job's state and counters (plus its first failures)."""

    id: int
    kind: str
    status: str
    dataset: str | None
    encoder_version: str | None
    total: int
    done: int
    failed: int
    skipped: int
    batches: int
    batches_done: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    failures: list[Failure] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def finished(self) -> bool:
        """Nothing will happen to the job any more without a user (done, failed, cancelled or interrupted)."""
        return self.status in ("done", "failed", "interrupted")


def create_job(
    *,
    session: Session,
    kind: str,
    request: JobRequest,
    batches: int,
    total: int,
    dataset_id: int | None,
    encoder_version_id: int,
    failures: Sequence[Failure] = (),
) -> IngestJob:
    """Insert a queued job with its up-front failures (from enumeration / slide planning)."""
    job = IngestJob(
        kind=kind,
        status="queued",
        dataset_id=dataset_id,
        encoder_version_id=encoder_version_id,
        sources=[request, Ledger(batches=batches, completed={})],
        total=total,
        failed=len(failures),
    )
    session.add(job)
    session.flush()
    _add_failures(session, job.id, failures)
    if batches == 0:
        job.status = "done"
        job.started_at = job.finished_at = utcnow()
    session.commit()
    return job


def _add_failures(session: Session, job_id: int, failures: Sequence[Failure]) -> None:
    """Add failure rows; recording a failure never fails on its text (non-UTF-8 names, NUL bytes, odd stages)."""
    for f in failures:
        stage = f.stage if f.stage in FAILURE_STAGES else "read"
        session.add(
            IngestFailure(
                job_id=job_id,
                source_path=display_path(f.source)[:4000],
                stage=stage,
                reason=display_path(f.reason)[:4000],
            )
        )


def mark_running(job_id: int, *, session: Session) -> None:
    """queued -> running (first batch started); a no-op afterwards."""
    session.execute(
        update(IngestJob)
        .where(IngestJob.id == job_id, IngestJob.status == "queued")
        .values(status="running", started_at=utcnow())
    )
    session.commit()


def job_request(job: IngestJob) -> JobRequest:
    """What the job was asked (``sources[0]``, see the module docstring); ``{}`` for a row without one."""
    sources = job.sources or []
    return cast(JobRequest, sources[0]) if sources and isinstance(sources[0], dict) else JobRequest()


def ledger(job: IngestJob) -> Ledger:
    """The batch ledger of a job (``sources[1]``, see the module docstring)."""
    sources = job.sources or []
    if len(sources) >= 2 and isinstance(sources[1], dict):
        return cast(Ledger, sources[1])
    return Ledger(batches=0, completed={})


def _save_ledger(job: IngestJob, book: Ledger) -> None:
    """Write ``book`` back as the job's ledger (its request unchanged); the JSON column is marked changed."""
    job.sources = [job_request(job), book]
    flag_modified(job, "sources")


def complete_batch(
    job_id: int,
    batch_index: int,
    outcome: BatchOutcome,
    *,
    session: Session,
    on_finish: Callable[[IngestJob, Session], None] | None = None,
) -> bool:
    """Record a finished batch exactly once; finish the job when it is the last one.

    Args:
        job_id: the job.
        batch_index: the batch's index within the job.
        outcome: its counters and failures.
        session: SQL session (committed here).
        on_finish: called inside the same transaction when this batch completes the job (e.g. switch the alias
            of a re-embedding); may set ``job.status`` / ``job.error``.

    Returns:
        False when the batch had already been recorded (a re-delivery): nothing changed.
    """
    # Take the job row's write lock first (PostgreSQL row lock; SQLite database write lock) so concurrent
    # batches serialise here and the ledger check below cannot race.
    session.execute(update(IngestJob).where(IngestJob.id == job_id).values(id=IngestJob.id))
    job = session.scalar(select(IngestJob).where(IngestJob.id == job_id).execution_options(populate_existing=True))
    if job is None:
        session.rollback()
        raise JobNotFoundError(f"job {job_id} does not exist")
    book = ledger(job)
    key = str(batch_index)
    if job.status == "failed" and job.error == CANCELLED:
        session.rollback()
        logger.info("job %d was cancelled: batch %d not recorded", job_id, batch_index)
        return False
    if key in book["completed"]:
        session.rollback()
        logger.info("job %d batch %d was already recorded (re-delivery): skipped", job_id, batch_index)
        return False
    _add_failures(session, job_id, outcome.failures)
    job.done += outcome.done
    job.skipped += outcome.skipped
    job.failed += outcome.failed
    book["completed"][key] = [outcome.done, outcome.failed, outcome.skipped]
    _save_ledger(job, book)
    if job.status == "queued":
        job.status = "running"
        job.started_at = utcnow()
    if len(book["completed"]) >= int(book["batches"]):
        job.status = "done"
        job.finished_at = utcnow()
        if on_finish is not None:
            on_finish(job, session)
    session.commit()
    return True


def _lock_job(job_id: int, session: Session) -> IngestJob:
    session.execute(update(IngestJob).where(IngestJob.id == job_id).values(id=IngestJob.id))
    job = session.scalar(select(IngestJob).where(IngestJob.id == job_id).execution_options(populate_existing=True))
    if job is None:
        session.rollback()
        raise JobNotFoundError(f"job {job_id} does not exist: list jobs with `histoquery jobs`")
    return job


def this_owner() -> Owner:
    """The owner record of this process (pid, host, heartbeat now)."""
    return Owner(pid=os.getpid(), host=socket.gethostname(), heartbeat=time.time())


def claim_job(job_id: int, *, session: Session) -> None:
    """Record this process as the owner of an in-process job (and its heartbeat)."""
    job = _lock_job(job_id, session)
    book = ledger(job)
    book["owner"] = this_owner()
    _save_ledger(job, book)
    session.commit()


def heartbeat(job_id: int, *, session: Session) -> None:
    """Refresh this process's heartbeat on a job it owns (no-op for a job owned by another process)."""
    job = _lock_job(job_id, session)
    book = ledger(job)
    owner = book.get("owner")
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        book["owner"] = this_owner()
        _save_ledger(job, book)
        session.commit()
    else:
        session.rollback()


def owner_gone(owner: Owner | None, now: float | None = None) -> bool:
    """Whether a job's recorded owner process no longer runs (False when no owner is recorded: broker jobs)."""
    if not owner:
        return False
    stale = (now or time.time()) - float(owner.get("heartbeat") or 0.0) > STALE_S
    if owner.get("host") != socket.gethostname():
        return stale
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return stale
    return stale  # alive, but a pid that stopped beating was reused by another process


def effective_status(job: IngestJob) -> str:
    """The job's status as users see it: ``interrupted`` for a queued / running job whose owner is gone."""
    if job.status in ("queued", "running") and owner_gone(ledger(job).get("owner")):
        return "interrupted"
    return job.status


def cancel_job(job_id: int, *, session: Session) -> None:
    """Cancel a queued, running or interrupted job: it becomes ``failed`` (:data:`CANCELLED`), its batches dropped.

    Raises:
        JobNotFoundError: no such job. IngestError: the job already finished.
    """
    from ingest.errors import IngestError

    job = _lock_job(job_id, session)
    if job.status in ("done", "failed"):
        session.rollback()
        raise IngestError(f"job {job_id} is already {job.status}: nothing to cancel")
    job.status, job.error, job.finished_at = "failed", CANCELLED, utcnow()
    session.commit()


def fail_job(job_id: int, error: str, *, session: Session) -> None:
    """Mark a job failed as a whole (a job-level error, not a per-file one)."""
    session.execute(
        update(IngestJob)
        .where(IngestJob.id == job_id)
        .values(status="failed", error=display_path(error)[:4000], finished_at=utcnow())
    )
    session.commit()


def job_status(job_id: int, *, session: Session, max_failures: int = 50) -> JobStatus:
    """The status of one job with up to ``max_failures`` failures.

    Raises:
        JobNotFoundError: no such job.
    """
    job = session.scalar(select(IngestJob).where(IngestJob.id == job_id).execution_options(populate_existing=True))
    if job is None:
        raise JobNotFoundError(f"job {job_id} does not exist: list jobs with `histoquery jobs`")
    failures = session.scalars(
        select(IngestFailure).where(IngestFailure.job_id == job_id).order_by(IngestFailure.id).limit(max_failures)
    ).all()
    return _status(job, session, [Failure(f.source_path, f.stage, f.reason) for f in failures])


def list_jobs(*, session: Session, limit: int = 50) -> list[JobStatus]:
    """The newest ``limit`` jobs, newest first (without failure lists)."""
    jobs = session.scalars(select(IngestJob).order_by(IngestJob.id.desc()).limit(limit)).all()
    return [_status(j, session, []) for j in jobs]


def _status(job: IngestJob, session: Session, failures: list[Failure]) -> JobStatus:
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    version = session.get(EncoderVersion, job.encoder_version_id) if job.encoder_version_id else None
    book = ledger(job)
    return JobStatus(
        id=job.id,
        kind=job.kind,
        status=effective_status(job),
        dataset=dataset.name if dataset else None,
        encoder_version=version.name if version else None,
        total=job.total,
        done=job.done,
        failed=job.failed,
        skipped=job.skipped,
        batches=int(book["batches"]),
        batches_done=len(book["completed"]),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        failures=failures,
    )
