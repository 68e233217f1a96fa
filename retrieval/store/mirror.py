"""A memory-mapped float32 copy of an embedded collection's vectors, one row per image id, for array-speed reads.

The qdrant-edge bindings hand every stored vector back as a Python list of floats (~35 µs to build for a 2048-d
vector, ~50 µs more to turn into numpy), so reading 20,000 vectors for a batch of 10,000 pairs costs seconds
whatever the batching. The embedded store therefore keeps, beside each collection, the same vectors as rows of a
memory-mapped file, addressed by the payload's ``image_id``: a batch of pairs reads its rows with one numpy
gather and scores them with one matrix operation.

Files under ``<store root>/mirrors/``: ``<collection>.f32`` (row ``r`` = the L2-normalised float32 vector of the
point whose payload ``image_id`` is ``r``; sparse: rows never written take no disk) and ``<collection>.present``
(one byte per row, 1 = the row holds a vector) and ``<collection>.ids`` (the row's point id, 16 uuid bytes).

Invariant (kept by :class:`retrieval.store.edge.EdgeVectorStore`): a row is written only after the engine stored
its point, and cleared before the engine deletes it; within one encoder version an image's vector never changes.
So a present row always matches a stored point, and a missing row (a store written before this file existed, a
crash between the two writes) only sends the reader back to the engine, which then fills the row in.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_MIN_ROWS = 1024
_GROWTH = 1.5


class VectorMirror:
    """Row-addressed float32 vectors (row = image id) in a sparse memory-mapped file, with a presence byte per row.

    Args:
        path: the vectors file (``.f32``); the presence file is the same path with suffix ``.present``.
        dim: vector dimension D.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.present_path = self.path.with_suffix(".present")
        self.ids_path = self.path.with_suffix(".ids")
        self.dim = int(dim)
        self._lock = threading.RLock()
        self._vectors: np.memmap | None = None
        self._present: np.memmap | None = None
        self._ids: np.memmap | None = None
        self._rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.present_path.exists() and self.ids_path.exists():
            rows = min(
                self.path.stat().st_size // (4 * self.dim),
                self.present_path.stat().st_size,
                self.ids_path.stat().st_size // 16,
            )
            if rows > 0:
                self._map(rows)

    # -- file management ----------------------------------------------------------------------------------------
    def _map(self, rows: int) -> None:
        """(Re)map both files with ``rows`` rows, growing them (sparsely) when needed."""
        for path, size in ((self.path, rows * 4 * self.dim), (self.present_path, rows), (self.ids_path, rows * 16)):
            with open(path, "ab") as fh:  # creates the file; never truncates existing rows
                if fh.tell() < size:
                    fh.truncate(size)
        self._vectors = np.memmap(self.path, dtype=np.float32, mode="r+", shape=(rows, self.dim))
        if hasattr(mmap, "MADV_RANDOM"):  # rows are read in random order: no readahead of their neighbours
            self._vectors._mmap.madvise(mmap.MADV_RANDOM)  # type: ignore[attr-defined]
        self._present = np.memmap(self.present_path, dtype=np.uint8, mode="r+", shape=(rows,))
        self._ids = np.memmap(self.ids_path, dtype=np.uint8, mode="r+", shape=(rows, 16))
        self._rows = rows

    def _reserve(self, max_row: int) -> None:
        if max_row < self._rows:
            return
        rows = max(max_row + 1, int(self._rows * _GROWTH), _MIN_ROWS)
        # no flush (msync) first: the old mapping's dirty pages stay in the page cache, which the new mapping shares;
        # an msync here wrote the whole file out synchronously at every growth of a bulk load
        self._map(rows)

    @property
    def rows(self) -> int:
        """Capacity in rows (ids ``0 .. rows - 1`` are addressable without growing)."""
        return self._rows

    def count(self) -> int:
        """Number of present rows."""
        present = self._present
        return 0 if present is None else int(np.count_nonzero(present))

    # -- writes -------------------------------------------------------------------------------------------------
    def write(self, image_ids: np.ndarray, vectors: np.ndarray, point_ids: Sequence[str]) -> None:
        """Store ``vectors`` (N, D) at rows ``image_ids`` (N,), L2-normalised (as the engine stores cosine vectors),
        with their points' uuid ids.

        Rows with a non-positive image id, a zero vector or a point id that is not a uuid are skipped (the reader
        then asks the engine).
        """
        ids = np.asarray(image_ids, dtype=np.int64)
        vecs = np.asarray(vectors, dtype=np.float32)
        if ids.size == 0:
            return
        uuids, valid = _uuid_bytes(point_ids)
        norms = np.linalg.norm(vecs, axis=1)
        keep = (ids > 0) & (norms > 0) & np.isfinite(norms) & valid
        ids, vecs, norms, uuids = ids[keep], vecs[keep], norms[keep], uuids[keep]
        if ids.size == 0:
            return
        with self._lock:
            self._reserve(int(ids.max()))
            assert self._vectors is not None and self._present is not None and self._ids is not None
            self._write_rows(ids, vecs / norms[:, None])
            self._ids[ids] = uuids
            self._present[ids] = 1  # last: a present row is always complete

    def _write_rows(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Write ``rows`` (N, D) at row numbers ``ids`` with one ``pwrite`` per run of consecutive ids (a bulk load
        writes runs of hundreds), not through the memory map: storing into a fresh page of the map costs a page
        fault; the map shares the page cache, so its readers see the rows at once. A repeated id: the last row."""
        order = np.argsort(ids, kind="stable")
        ids, rows = ids[order], np.ascontiguousarray(rows[order], dtype=np.float32)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(ids) != 1) + 1, [ids.size]))
        row_bytes = 4 * self.dim
        with open(self.path, "r+b", buffering=0) as fh:
            for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
                view, offset = rows[a:b].data.cast("B"), int(ids[a]) * row_bytes
                while view:  # a regular file takes it whole; a short write goes on where it stopped
                    done = os.pwrite(fh.fileno(), view, offset)
                    view, offset = view[done:], offset + done

    def clear(self, image_ids: np.ndarray) -> None:
        """Mark rows ``image_ids`` absent (before their points are deleted from the engine)."""
        ids = np.asarray(image_ids, dtype=np.int64)
        with self._lock:
            if self._present is None or self._vectors is None:
                return
            ids = ids[(ids > 0) & (ids < self._rows)]
            self._present[ids] = 0
            self._vectors[ids] = 0.0

    # -- reads --------------------------------------------------------------------------------------------------
    def read(self, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``image_ids`` (N,), repeats allowed, as a (N, D) float32 copy (zeros where absent) and a (N,) bool
        mask of presence: one gather from the memory map."""
        ids = np.asarray(image_ids, dtype=np.int64)
        vectors, present, rows = self._vectors, self._present, self._rows  # one consistent mapping
        if vectors is None or present is None or ids.size == 0:
            return np.zeros((ids.size, self.dim), dtype=np.float32), np.zeros(ids.size, dtype=bool)
        inside = (ids > 0) & (ids < rows)
        safe = np.where(inside, ids, 0)  # row 0 is never present (image ids start at 1)
        found = inside & (present[safe] != 0)
        out = np.asarray(vectors[safe])
        out[~found] = 0.0
        return out, found

    def point_ids(self, image_ids: Sequence[int]) -> list[str]:
        """The point ids (uuid strings) stored with present rows ``image_ids``."""
        ids = self._ids
        assert ids is not None
        return [str(uuid.UUID(bytes=bytes(ids[int(i)]))) for i in image_ids]

    def present_ids(self) -> np.ndarray:
        """All image ids with a present row (ascending)."""
        present = self._present
        return np.zeros(0, dtype=np.int64) if present is None else np.flatnonzero(present).astype(np.int64)

    def matrix(self) -> np.ndarray:
        """The whole (rows, D) memory map, read-only view (absent rows are zeros)."""
        vectors = self._vectors
        if vectors is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        view = vectors.view(np.ndarray)
        view.flags.writeable = False
        return view

    def flush(self) -> None:
        """Write dirty pages to the files."""
        with self._lock:
            for mm in (self._vectors, self._present, self._ids):
                if mm is not None:
                    mm.flush()

    def close(self) -> None:
        """Flush and unmap."""
        with self._lock:
            self.flush()
            self._vectors = self._present = self._ids = None
            self._rows = 0


def _uuid_bytes(point_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16) uuid bytes of ``point_ids`` and a (N,) mask of those that are uuids: canonical ids (what
    :func:`retrieval.ids.point_id` makes) in one hex decode of the batch, any other form one by one."""
    n = len(point_ids)
    hexes = [str(p).replace("-", "") for p in point_ids]
    if all(len(h) == 32 for h in hexes):
        try:
            return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(n, 16).copy(), np.ones(
                n, dtype=bool
            )
        except ValueError:
            pass  # some id is not hex: one by one below
    uuids = np.zeros((n, 16), dtype=np.uint8)
    valid = np.zeros(n, dtype=bool)
    for j, pid in enumerate(point_ids):
        try:
            uuids[j] = np.frombuffer(uuid.UUID(str(pid)).bytes, dtype=np.uint8)
            valid[j] = True
        except ValueError:
            continue
    return uuids, valid


def remove_mirror(path: Path) -> None:
    """Delete a mirror's files (``path`` = its ``.f32`` file); missing files are fine."""
    for p in (Path(path), Path(path).with_suffix(".present"), Path(path).with_suffix(".ids")):
        p.unlink(missing_ok=True)
