"""The Celery app: Redis broker, late acks, one message in flight per worker process.

Built by :func:`create_app` from the settings (never at import time). Messages carry a job id, a batch index
and the batch payload (paths / ids / slide regions), never pixels or vectors.

Reliability settings:
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after its batch is recorded;
  a worker killed mid-batch leaves it unacknowledged and the broker re-delivers it (after ``visibility_timeout``).
- ``task_acks_on_failure_or_timeout=False``: a task that fails (e.g. retries exhausted while a service is down)
  is not acknowledged either, so it is re-delivered rather than lost.
- ``visibility_timeout`` (``Settings.task_visibility_timeout_s``) must exceed the longest batch.
- ``worker_prefetch_multiplier=1``: a worker reserves one batch per process, so idle workers get the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery

if TYPE_CHECKING:
    from retrieval.settings import Settings

QUEUE = "histoquery.ingest"


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings.broker_url`` (Redis), with the ingest tasks registered.

    Raises:
        ValueError: no broker configured (use the embedded mode instead).
    """
    if not settings.broker_url:
        raise ValueError("no broker configured: set HISTOQUERY_BROKER_URL=redis://host:6379/0")
    app = Celery("histoquery", broker=settings.broker_url, backend=settings.result_backend)
    visibility = int(settings.task_visibility_timeout_s)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=settings.result_backend is None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=False,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        broker_transport_options={"visibility_timeout": visibility},
        result_backend_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        task_time_limit=visibility - 5 if visibility > 60 else None,
    )
    app.histoquery_settings = settings  # type: ignore[attr-defined]
    import ingest.tasks  # noqa: F401 - registers the shared tasks on this app

    return app
