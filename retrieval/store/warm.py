"""Page-cache warm-up of an embedded collection whose float vectors live on disk.

With ``vectors_on_disk`` the engine searches the int8 copies in RAM and rescores the best candidates with the float
vectors, read from disk: ~280 KiB per query whose neighbourhood is not in the page cache, which took a cold top-k from
~1.6 ms to ~15 ms at 1M x 2048 (BENCHMARKS.md). :class:`PageCacheWarmer` reads a collection's segment files (float
vectors, payloads, HNSW links, indexes; not the int8 copies) once, sequentially, in a background thread, so that later
searches find them in the page cache. It is bounded by memory: it does not start when the files do not fit in
``MemAvailable`` minus a reserve, and stops early when ``MemAvailable`` falls under the reserve while it reads (each
case logged with what to do). Reading goes through ``read`` (page cache, not this process's RSS) and skips the holes
of sparse files.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

_CHUNK = 4 << 20  # bytes per read
_CHECK_EVERY = 256 << 20  # bytes between two looks at MemAvailable

WarmOutcome = Literal["running", "done", "skipped", "stopped", "failed"]


def mem_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where the kernel does not report it)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def evict(folder: Path) -> None:
    """Evict the files under ``folder`` (a closed store's) from the page cache (``POSIX_FADV_DONTNEED``; pages still
    mapped by a process stay): the next searches read from disk what they need. For benchmarks and tests of cold
    reads."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm_files(collection_dir: Path) -> list[Path]:
    """The files a search may read from disk: every segment file (HNSW links, id tracker, payload indexes, payloads,
    float vectors) except the int8 copies, which the engine keeps in RAM. The float vectors (``vector_storage``) come
    last: an unrescored search needs the rest first. Not the WAL (read only on open)."""
    out = [
        path
        for path in (collection_dir / "segments").rglob("*")
        if path.is_file() and not path.name.startswith("quantized")
    ]
    return sorted(out, key=lambda p: ("vector_storage" in p.parts, allocated(p)))


def allocated(path: Path) -> int:
    """Bytes of ``path`` on disk (sparse files count their data only; 0 for a file gone meanwhile)."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


@dataclass
class WarmResult:
    """What a warm-up did: ``outcome`` (running, done, skipped, stopped, failed), bytes read of ``total_bytes``, the
    files, seconds, and the reason when it did not finish."""

    collection: str
    files: list[Path]
    total_bytes: int
    outcome: WarmOutcome = "running"
    bytes_read: int = 0
    seconds: float = 0.0
    reason: str = ""
    done: threading.Event = field(default_factory=threading.Event, repr=False)


class PageCacheWarmer:
    """Reads ``files`` once in a daemon thread (niced), unless they do not fit in memory.

    Args:
        collection: name for the log lines.
        files: what to read (:func:`warm_files`).
        reserve_bytes: ``MemAvailable`` to leave: the warm-up does not start when ``total - MemAvailable`` would leave
            less, and stops when ``MemAvailable`` falls under it while reading.
    """

    def __init__(self, collection: str, files: list[Path], reserve_bytes: int) -> None:
        self.result = WarmResult(collection, files, sum(allocated(p) for p in files))
        self.reserve_bytes = int(reserve_bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"warm-{collection}", daemon=True)

    def start(self) -> PageCacheWarmer:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the thread to stop and wait for it (closing the store)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> WarmResult:
        """Block until the warm-up has finished (any outcome) or ``timeout`` passed; the result so far."""
        self.result.done.wait(timeout)
        return self.result

    def _finish(self, outcome: WarmOutcome, reason: str, t0: float) -> None:
        res = self.result
        res.outcome, res.reason, res.seconds = outcome, reason, time.perf_counter() - t0

    def _run(self) -> None:
        # ``done`` is set last, after the outcome's log line: whoever waits on the result sees the warning first
        try:
            self._warm()
        finally:
            self.result.done.set()

    def _warm(self) -> None:
        t0 = time.perf_counter()
        res = self.result
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)
        except (OSError, AttributeError) as exc:  # not Linux, or not allowed: warm at the normal priority
            log.debug("%s: warm-up thread keeps its priority (%s)", res.collection, exc)
        avail = mem_available()
        mib = 1 << 20
        if avail is None:
            self._finish("skipped", "MemAvailable unknown (no /proc/meminfo)", t0)
            log.warning("%s: float vectors on disk not warmed: %s", res.collection, res.reason)
            return
        if res.total_bytes > avail - self.reserve_bytes:
            self._finish(
                "skipped",
                f"{res.total_bytes / mib:,.0f} MiB of float vectors and payloads do not fit in MemAvailable "
                f"{avail / mib:,.0f} MiB less a reserve of {self.reserve_bytes / mib:,.0f} MiB",
                t0,
            )
            log.warning(
                "%s: %s; searches read the vectors they rescore from disk (~10-15 ms each). Give the machine more "
                "memory, or set HISTOQUERY_RESCORE=off (int8 order, no disk reads)",
                res.collection,
                res.reason,
            )
            return
        try:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            since_check = 0
            for path in res.files:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue  # a segment replaced by optimize() meanwhile
                try:
                    for start, stop in _extents(fd):
                        pos = start
                        while pos < stop:
                            if self._stop.is_set():
                                self._finish("stopped", "the store was closed", t0)
                                return
                            got = os.preadv(fd, [view[: min(_CHUNK, stop - pos)]], pos)
                            if got <= 0:
                                break
                            pos += got
                            res.bytes_read += got
                            since_check += got
                            if since_check >= _CHECK_EVERY:
                                since_check = 0
                                now = mem_available()
                                if now is not None and now < self.reserve_bytes:
                                    self._finish("stopped", f"MemAvailable fell to {now / mib:,.0f} MiB", t0)
                                    log.warning(
                                        "%s: warm-up stopped after %.0f of %.0f MiB: %s (reserve %.0f MiB)",
                                        res.collection,
                                        res.bytes_read / mib,
                                        res.total_bytes / mib,
                                        res.reason,
                                        self.reserve_bytes / mib,
                                    )
                                    return
                finally:
                    os.close(fd)
        except OSError as exc:
            self._finish("failed", str(exc), t0)
            log.warning("%s: warm-up of the float vectors failed: %s", res.collection, exc)
            return
        self._finish("done", "", t0)
        log.info(
            "%s: %.0f MiB of float vectors and payloads read into the page cache in %.1f s",
            res.collection,
            res.bytes_read / mib,
            res.seconds,
        )


def _extents(fd: int) -> list[tuple[int, int]]:
    """(start, stop) byte ranges holding data in an open file (the whole file where SEEK_DATA is unsupported)."""
    size = os.fstat(fd).st_size
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None:
        return [(0, size)] if size else []
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, seek_data)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                break
            return [(0, size)]  # the file system cannot tell holes: read it all
        stop = os.lseek(fd, start, seek_hole)
        out.append((start, stop))
        pos = stop
    return out
