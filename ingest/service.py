"""The public entry points: submit an ingestion or a re-embedding, follow jobs, get an image's pixels.

One code path, two deployments: with ``settings.broker_url`` the batches go to Celery workers; without, they
run in the calling process (same functions, same progress reports).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest.errors import IngestError, JobNotFoundError
from ingest.jobs import JobStatus, create_job, fail_job
from ingest.jobs import job_status as _job_status
from ingest.jobs import list_jobs as _list_jobs
from ingest.paths import display_path
from ingest.payloads import BatchPayload, JobRequest, ReembedBatch
from ingest.planning import Plan, TilingOptions, plan_ingest

if TYPE_CHECKING:
    from ingest.paths import Roots
    from retrieval.settings import Settings
    from retrieval.store.base import VectorStore

logger = logging.getLogger(__name__)

Progress = Callable[[JobStatus], None]
#: Attempts per batch in embedded mode before a temporary error (store held by another process, database down)
#: fails the job (back-off 0.5 s ... 30 s between attempts: about a minute in all).
EMBEDDED_ATTEMPTS = 8


@contextmanager
def _session(settings: Settings, writes: bool = False) -> Iterator[Session]:
    """A session on the process's one engine for ``settings.db_url`` (:func:`retrieval.db.engine_for`).

    ``writes``: a submission about to create rows first lets :func:`retrieval.db.ensure_schema` decide (an empty
    database is created; one behind the code is refused with the fix, never upgraded here).
    """
    from retrieval.db import engine_for, ensure_schema, require_schema, session_factory

    if writes:
        ensure_schema(settings.db_url)
    engine = engine_for(settings.db_url)
    require_schema(engine)
    with session_factory(engine)() as session:
        yield session


@contextmanager
def _store_scope(settings: Settings, store: VectorStore | None) -> Iterator[VectorStore]:
    """``store`` when the caller holds one open (it stays open), else one opened from settings for this scope."""
    from retrieval.store import open_vector_store

    if store is not None:
        yield store
        return
    own = open_vector_store(settings)
    try:
        yield own
    finally:
        own.close()


def _dispatch(
    job_id: int,
    batches: Sequence[BatchPayload],
    *,
    settings: Settings,
    store: VectorStore | None,
    progress: Progress | None,
    indices: Sequence[int] | None = None,
) -> None:
    """Send the batches to the broker, or run them here when none is configured.

    ``indices`` are the job's batch numbers of ``batches`` (default ``0..N-1``; a resumed job sends its missing ones).
    """
    if not batches:
        return
    numbers = list(indices) if indices is not None else list(range(len(batches)))
    if settings.broker_url:
        from ingest.celery_app import create_app
        from ingest.tasks import TASK_NAME

        app = create_app(settings)
        try:
            with app.producer_or_acquire() as producer:
                for index, payload in zip(numbers, batches, strict=True):
                    app.send_task(TASK_NAME, args=[job_id, index, payload], producer=producer)
        except Exception as exc:
            with _session(settings) as session:
                fail_job(job_id, f"could not queue batches: {exc}", session=session)
            raise IngestError(
                f"cannot queue job {job_id} on the broker {settings.broker_url}: {exc} (is Redis running?)"
            ) from exc
        return
    from ingest.context import IngestContext
    from ingest.errors import transient_errors
    from ingest.runner import run_embedded

    ctx = IngestContext(settings, store=store, hold_store=True)
    try:
        run_embedded(ctx, job_id, batches, progress=progress, indices=numbers, max_attempts=EMBEDDED_ATTEMPTS)
    except transient_errors() as exc:
        # retried with back-off and still unavailable (e.g. the embedded store held by another process): the job
        # fails as a whole with one message, its items are not marked failed one by one
        message = f"stopped after {EMBEDDED_ATTEMPTS} attempts: {exc}"
        with _session(settings) as session:
            fail_job(job_id, message, session=session)
        raise IngestError(f"job {job_id} {message}; resume it later with `histoquery jobs --resume {job_id}`") from exc
    finally:
        ctx.close()


def _plan(
    paths: Sequence[str | Path],
    *,
    session: Session,
    settings: Settings,
    dataset_id: int,
    labels_from_folders: bool,
    manifest: str | Path | None,
    tiling: TilingOptions,
    groups_csv: str | Path | None,
    group_from: str | None,
    roots: Roots | None,
) -> Plan:
    """Plan an ingestion job: the one planning call of :func:`submit_ingest` and :func:`resume_job`.

    A resumed job must be planned exactly as it was submitted (same batches, same groups), so both go through
    here, and every option is a required keyword: a caller cannot silently leave one out (``resume_job`` once
    dropped the ``--groups`` / ``--group-from`` rules, and its images lost their group).
    """
    from retrieval.catalog import get_or_create_dataset
    from retrieval.groups import GroupRules
    from training.pixels import process_budget

    cache: dict[str, int] = {}

    def resolve(name: str) -> int:
        if name not in cache:
            cache[name] = get_or_create_dataset(name, session=session).id
        return cache[name]

    return plan_ingest(
        paths,
        session=session,
        dataset_id=dataset_id,
        resolve_dataset=resolve,
        batch_size=settings.ingest_batch_size,
        labels_from_folders=labels_from_folders,
        manifest=manifest,
        tiling=tiling,
        groups=GroupRules.build(groups_csv=groups_csv, group_from=group_from),
        roots=roots,
        budget=process_budget(settings.decode_memory_mb * 1024 * 1024),
    )


def submit_ingest(
    paths: Sequence[str | Path],
    *,
    settings: Settings,
    dataset: str,
    labels_from_folders: bool = False,
    manifest: str | Path | None = None,
    tiling: TilingOptions | None = None,
    store: VectorStore | None = None,
    progress: Progress | None = None,
    groups_csv: str | Path | None = None,
    group_from: str | None = None,
    roots: Sequence[str | Path] | None = None,
) -> int:
    """Create an ingestion job for folders / files / a manifest and start it.

    With a broker, the batches are queued for workers and this returns at once; without one they run here
    before returning (``progress`` is called after each batch).

    Args:
        paths: folders (recursive) and files: images and whole slides.
        settings: platform settings.
        dataset: dataset name (created if needed); a manifest's ``dataset`` column overrides it per row.
        labels_from_folders: label each image with its folder's name.
        manifest: manifest CSV (``path,label,slide,dataset,...``).
        tiling: slide tiling options.
        store: an open vector store to reuse in embedded mode (e.g. the dashboard's).
        progress: embedded-mode progress callback.
        groups_csv: CSV ``path,group`` giving each file its group (patient / case / slide).
        group_from: regex on file names whose first capture group (or whole match) is the group.
        roots: allowed roots every file of the job must lie in (default ``settings.allowed_roots``; none = no
            check). Inputs, folder entries, manifest rows and slides outside them are refused one by one.

    Returns:
        The job id.

    Raises:
        IngestError: bad manifest, broker unreachable, an empty root. RetrievalError: no active encoder, database.
    """
    from ingest.paths import Roots
    from retrieval.catalog import active_encoder_version, get_or_create_dataset

    if not paths and manifest is None:
        raise IngestError("nothing to ingest: give at least one PATH or --manifest")
    wanted_roots = list(settings.allowed_roots if roots is None else roots)
    allowed = Roots(wanted_roots) if wanted_roots else None
    with _session(settings, writes=True) as session:
        version = active_encoder_version(session=session, name=settings.active_encoder)
        ds = get_or_create_dataset(dataset, session=session)
        plan = _plan(
            paths,
            session=session,
            settings=settings,
            dataset_id=ds.id,
            labels_from_folders=labels_from_folders,
            manifest=manifest,
            tiling=tiling or TilingOptions(),
            groups_csv=groups_csv,
            group_from=group_from,
            roots=allowed,
        )
        request = JobRequest(
            inputs=[display_path(Path(p).expanduser().absolute()) for p in paths],
            manifest=display_path(manifest) if manifest else None,
            labels_from_folders=labels_from_folders,
            groups_csv=str(groups_csv) if groups_csv else None,
            group_from=group_from,
            tiling=(tiling or TilingOptions()).__dict__,
            roots=allowed.as_strings() if allowed else None,
        )
        job = create_job(
            session=session,
            kind="ingest",
            request=request,
            batches=len(plan.batches),
            total=plan.total,
            dataset_id=ds.id,
            encoder_version_id=version.id,
            failures=plan.failures,
        )
        job_id = job.id
    logger.info(
        "job %d: %d items in %d batches (%d failed up front)", job_id, plan.total, len(plan.batches), len(plan.failures)
    )
    _dispatch(job_id, plan.batches, settings=settings, store=store, progress=progress)
    return job_id


def submit_reembed(
    *,
    settings: Settings,
    encoder: str | None = None,
    checkpoint: str | Path | None = None,
    name: str | None = None,
    activate: bool = True,
    store: VectorStore | None = None,
    progress: Progress | None = None,
) -> int:
    """Embed every stored image with another encoder version, into that version's own collection.

    The active alias is switched to the new version only when every image is stored (and ``activate``).

    Args:
        settings: platform settings.
        encoder: name of a registered encoder version, or
        checkpoint: a checkpoint to register first (as ``name``, default derived from it).
        activate: switch the active encoder when complete.
        store: an open vector store to reuse (embedded mode).
        progress: embedded-mode progress callback.

    Returns:
        The job id.
    """
    from retrieval.catalog import active_encoder_version, register_encoder
    from retrieval.models import Image

    if (encoder is None) == (checkpoint is None):
        raise IngestError("give exactly one of --encoder VERSION or --checkpoint FILE")
    with _session(settings, writes=True) as session:
        if checkpoint is not None:
            with _store_scope(settings, store) as st:
                version = register_encoder(Path(checkpoint), session=session, store=st, name=name)
        else:
            version = active_encoder_version(session=session, name=encoder)
        ids = list(session.scalars(select(Image.id).where(Image.status == "done").order_by(Image.id)).all())
        size = settings.ingest_batch_size
        batches = [ReembedBatch(kind="reembed", image_ids=ids[i : i + size]) for i in range(0, len(ids), size)]
        job = create_job(
            session=session,
            kind="reembed",
            request=JobRequest(encoder=version.name, activate=activate),
            batches=len(batches),
            total=len(ids),
            dataset_id=None,
            encoder_version_id=version.id,
        )
        job_id = job.id
        if not batches and activate:
            from ingest.runner import finish_reembed

            # nothing to embed: the job is complete now, so switch the alias here (a batch would do it otherwise)
            finish_reembed(job, session=session, open_store=lambda: _store_scope(settings, store))
            session.commit()
    _dispatch(job_id, batches, settings=settings, store=store, progress=progress)
    return job_id


def resume_job(
    job_id: int, *, settings: Settings, store: VectorStore | None = None, progress: Progress | None = None
) -> int:
    """Resume an interrupted ingestion job: plan it again from its request and run only its missing batches.

    Batches recorded as complete are not run again, and the pipeline skips what is already stored, so exactly the
    missing images are stored.

    Returns:
        The number of batches resumed.

    Raises:
        JobNotFoundError: no such job. IngestError: not an interrupted ingestion job, or its inputs changed since
            it was planned (another batch count).
    """
    from ingest.jobs import CANCELLED, effective_status, job_request, ledger
    from ingest.paths import Roots
    from retrieval.models import IngestJob

    with _session(settings) as session:
        job = session.get(IngestJob, job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} does not exist: list jobs with `histoquery jobs`")
        status = effective_status(job)
        stopped = status == "failed" and job.error != CANCELLED and len(ledger(job)["completed"]) < job_batches(job)
        if status != "interrupted" and not stopped:
            hint = "it is still running" if status in ("queued", "running") else f"it is {status}"
            if job.error == CANCELLED:
                hint = "it was cancelled"
            raise IngestError(
                f"job {job_id} cannot be resumed: {hint} (interrupted jobs and jobs stopped by an error are)"
            )
        if job.kind != "ingest":
            raise IngestError(f"job {job_id} is a {job.kind} job: run `histoquery reembed` again instead of resuming")
        request, book = job_request(job), ledger(job)
        plan = _plan(
            request.get("inputs") or [],
            session=session,
            settings=settings,
            dataset_id=int(job.dataset_id or 0),
            labels_from_folders=bool(request.get("labels_from_folders")),
            manifest=request.get("manifest"),
            tiling=TilingOptions(**(request.get("tiling") or {})),
            groups_csv=request.get("groups_csv"),
            group_from=request.get("group_from"),
            roots=Roots(saved_roots) if (saved_roots := request.get("roots")) else None,
        )
        if len(plan.batches) != int(book["batches"]):
            raise IngestError(
                f"job {job_id}: its inputs changed since it was planned ({len(plan.batches)} batches now, "
                f"{book['batches']} then): start a new ingestion instead (stored images are skipped)"
            )
        missing = [i for i in range(len(plan.batches)) if str(i) not in book["completed"]]
        job.status, job.error, job.finished_at = "running", None, None
        session.commit()
    logger.info("job %d: resuming %d of %d batches", job_id, len(missing), len(plan.batches))
    _dispatch(
        job_id, [plan.batches[i] for i in missing], settings=settings, store=store, progress=progress, indices=missing
    )
    return len(missing)


def job_batches(job: Any) -> int:
    """How many batches a job was planned with."""
    from ingest.jobs import ledger

    return int(ledger(job)["batches"])


def cancel(job_id: int, *, settings: Settings) -> None:
    """Cancel a queued, running or interrupted job (its remaining batches are dropped).

    Raises:
        JobNotFoundError: no such job. IngestError: it already finished.
    """
    from ingest.jobs import cancel_job

    with _session(settings) as session:
        cancel_job(job_id, session=session)


def job_status(job_id: int, *, settings: Settings, max_failures: int = 50) -> JobStatus:
    """Status and counters of one job, with its first ``max_failures`` failures."""
    with _session(settings) as session:
        return _job_status(job_id, session=session, max_failures=max_failures)


def list_jobs(*, settings: Settings, limit: int = 50) -> list[JobStatus]:
    """The newest jobs, newest first."""
    with _session(settings) as session:
        return _list_jobs(session=session, limit=limit)


def wait_for_job(
    job_id: int,
    *,
    settings: Settings,
    progress: Progress | None = None,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> JobStatus:
    """Poll a job until it is done or failed, calling ``progress`` on each poll.

    Raises:
        IngestError: ``timeout_s`` passed first.
    """
    from retrieval.db import engine_for, session_factory

    start = time.monotonic()
    sessions = session_factory(engine_for(settings.db_url))
    while True:
        try:
            with sessions() as session:
                status = _job_status(job_id, session=session, max_failures=0)
        except Exception as exc:  # noqa: BLE001 - the database may be briefly unavailable: keep waiting
            from sqlalchemy.exc import OperationalError

            if not isinstance(exc, OperationalError):
                raise
            logger.warning("job %d: database unavailable (%s); still waiting", job_id, exc.orig)
            time.sleep(poll_s)
            continue
        if progress is not None:
            progress(status)
        if status.finished:
            with sessions() as session:
                return _job_status(job_id, session=session)
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise IngestError(f"job {job_id} did not finish within {timeout_s:.0f}s (is a worker running?)")
        time.sleep(poll_s)
