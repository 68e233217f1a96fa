"""Celery tasks: thin wrappers over :func:`ingest.runner.execute_batch`.

Transient errors (broker, database, vector store unavailable) are retried with exponential back-off
(``autoretry_for``); bad inputs never raise here, they are recorded as failures of the job.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from celery import Task, shared_task

from ingest.errors import transient_errors
from ingest.payloads import BatchPayload

logger = logging.getLogger(__name__)

#: The batch task's registered name (celery_app registers this module; the data flows tasks -> celery_app).
TASK_NAME = "histoquery.ingest_batch"

_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


def worker_context(app: Any) -> Any:
    """This worker process's :class:`~ingest.context.IngestContext` (built on first use, after the fork)."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            from ingest.context import IngestContext

            settings = getattr(app, "histoquery_settings", None)
            if settings is None:
                from retrieval.settings import get_settings

                settings = get_settings()
            device = getattr(app, "histoquery_device", None)
            # Several worker processes may share one embedded store: open it per batch under a lock.
            _CONTEXT = IngestContext(settings, hold_store=False, device=device)
            atexit.register(_CONTEXT.close)
        return _CONTEXT


@shared_task(
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=transient_errors(),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=50,
)
def ingest_batch(self: Task, job_id: int, batch_index: int, payload: BatchPayload) -> dict[str, int]:
    """Process batch ``batch_index`` of job ``job_id`` (payload: see :mod:`ingest.pipeline`)."""
    from ingest.runner import execute_batch

    outcome = execute_batch(worker_context(self.app), job_id, batch_index, payload)
    return {"done": outcome.done, "failed": outcome.failed, "skipped": outcome.skipped}
