"""Per-process services for running batches: SQL sessions, cached encoders, vector-store access, decode threads.

Built once per process (the CLI in embedded mode, each Celery worker process) and passed to the pipeline.
The embedded Qdrant engine (``vector_backend=edge``) allows one process at a time on its folder: when several
worker processes share it, each batch takes a file lock and opens / closes the store around its write
(``hold_store=False``). With a Qdrant server, or in the embedded single-process mode, the store stays open.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.errors import TransientError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from retrieval.models import EncoderVersion
    from retrieval.settings import Settings
    from retrieval.store.base import VectorStore
    from training.encoder import Encoder

logger = logging.getLogger(__name__)


def default_decode_threads() -> int:
    """Decode threads per process: one per core, at least 2, at most 16."""
    return max(2, min(16, os.cpu_count() or 2))


class IngestContext:
    """Services one process needs to run ingest batches.

    Args:
        settings: platform settings.
        store: an already-open vector store to use (e.g. the dashboard's); default: open from settings.
        hold_store: keep the store open between batches; False = open it per batch under a file lock
            (several processes sharing one embedded store).
        decode_threads: size of the decode thread pool.
        device: encoder device override (default ``settings.device``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: VectorStore | None = None,
        hold_store: bool = True,
        decode_threads: int | None = None,
        device: str | None = None,
    ) -> None:
        from retrieval.db import engine_for, session_factory

        self.settings = settings
        self.engine = engine_for(settings.db_url)  # the process's one engine for this database (shared)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.device = device or settings.device
        self.pool = ThreadPoolExecutor(decode_threads or default_decode_threads(), thread_name_prefix="hq-decode")
        from training.pixels import process_budget

        # every decode thread of this process draws from one budget: 16 threads on 16 large files wait in turn
        self.decode_budget = process_budget(settings.decode_memory_mb * 1024 * 1024)
        self._store = store
        self._own_store = store is None
        self._hold = hold_store or store is not None or settings.vector_backend == "server"
        self._encoders: dict[tuple[int, str], Encoder] = {}
        self._lock = threading.Lock()
        # Two batches may run at once in one process (embedded mode): one embeds while the other commits.
        # embed_lock: one batch at a time on the encoder; commit_lock: one batch at a time writing rows, vectors and
        # its ledger entry. Uncontended (free) when a process runs one batch at a time (Celery worker processes).
        self.embed_lock = threading.Lock()
        self.commit_lock = threading.Lock()

    def encoder(self, version: EncoderVersion) -> Encoder:
        """The encoder of ``version`` (loaded once per process)."""
        from training.encoder import Encoder

        key = (int(version.id), version.checkpoint_sha256)
        with self._lock:
            enc = self._encoders.get(key)
            if enc is None:
                enc = Encoder.from_checkpoint(version.checkpoint_path, device=self.device)
                if enc.checkpoint_sha256 != version.checkpoint_sha256:
                    from ingest.errors import IngestError

                    raise IngestError(
                        f"checkpoint {version.checkpoint_path} changed since encoder version {version.name!r} was "
                        "registered (sha256 differs): register the new file as a new version"
                    )
                self._encoders[key] = enc
            return enc

    @contextlib.contextmanager
    def store(self) -> Iterator[VectorStore]:
        """The vector store, for one batch's write (locked and short-lived when shared between processes)."""
        from retrieval.store import open_vector_store

        if self._hold:
            if self._store is None:
                self._store = _open(open_vector_store, self.settings)
            yield self._store
            return
        assert self.settings.qdrant_path is not None
        lock_path = Path(self.settings.qdrant_path) / ".histoquery-writer.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                store = _open(open_vector_store, self.settings)
                try:
                    yield store
                finally:
                    store.close()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the thread pool and the store (if opened here); the engine is the process's, shared: kept."""
        self.pool.shutdown(wait=True)
        if self._store is not None and self._own_store:
            self._store.close()
        self._store = None


def _open(factory: Any, settings: Settings) -> VectorStore:
    try:
        store: VectorStore = factory(settings)
        return store
    except Exception as exc:
        # The embedded engine refuses a second process on its folder ("WouldBlock"): wait and retry.
        if "WouldBlock" in str(exc) or "Resource temporarily unavailable" in str(exc):
            raise TransientError(f"vector store {settings.qdrant_path} is busy (open in another process)") from exc
        raise
