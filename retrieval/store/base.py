"""The small typed interface every vector-store backend implements, and its value types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from retrieval.errors import VectorStoreError

#: Payload fields that queries filter on (SearchFilter: dataset, label, slide_id, group; vectors_by_image_ids:
#: image_id);
#: every backend creates a payload index for each, and for no other field, since each index costs every upsert
#: (``dataset_id`` rides in the payload unindexed: nothing filters on it). Integer indexes are lookup-only: every
#: filter matches exact values, none a range.
PAYLOAD_INDEXES: dict[str, Literal["keyword", "integer"]] = {
    "image_id": "integer",
    "dataset": "keyword",
    "label": "keyword",
    "slide_id": "integer",
    "group": "keyword",
}


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search by payload. All given conditions must hold.

    Attributes:
        dataset: Dataset name.
        label: Image label.
        slide_id: Only tiles of this slide.
        exclude_slide_ids: No tiles of these slides (``Retrieval.top_k(exclude_same_group=True)`` adds the query's
            slide when the query tile is grouped by its slide, for points stored without a group).
        exclude_image_ids: Never these images (the query itself).
        exclude_groups: No images of these groups (``exclude_same_group``: patient / case / slide, see
            ``retrieval.groups.image_group``).
    """

    dataset: str | None = None
    label: str | None = None
    slide_id: int | None = None
    exclude_slide_ids: tuple[int, ...] = ()
    exclude_image_ids: tuple[int, ...] = ()
    exclude_groups: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return (
            self.dataset is None
            and self.label is None
            and self.slide_id is None
            and not self.exclude_slide_ids
            and not self.exclude_image_ids
            and not self.exclude_groups
        )

    def must(self) -> dict[str, str | int]:
        """Equality conditions as ``{field: value}``."""
        out: dict[str, str | int] = {}
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.label is not None:
            out["label"] = self.label
        if self.slide_id is not None:
            out["slide_id"] = self.slide_id
        return out

    def must_not(self) -> dict[str, list[int] | list[str]]:
        """Exclusions as ``{field: [values]}``."""
        out: dict[str, list[int] | list[str]] = {}
        if self.exclude_slide_ids:
            out["slide_id"] = [int(v) for v in self.exclude_slide_ids]
        if self.exclude_image_ids:
            out["image_id"] = [int(v) for v in self.exclude_image_ids]
        if self.exclude_groups:
            out["group"] = [str(v) for v in self.exclude_groups]
        return out


@dataclass(frozen=True)
class Hit:
    """One search result: point id (uuid string), cosine similarity and payload."""

    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionConfig:
    """Index settings of a new collection (from :class:`retrieval.settings.Settings`)."""

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef_search: int = 128
    quantization: Literal["none", "int8"] = "int8"
    vectors_on_disk: bool = False
    full_scan_threshold_kb: int = 10_000
    #: rescoring of int8 candidates with the float vectors: "on", "off", or "auto" (rescore, except an embedded
    #: on-disk collection that the warm-up found too large for memory; a server rescores always)
    rescore: Literal["auto", "on", "off"] = "auto"
    #: embedded store: read an on-disk collection's float vectors and payloads into the page cache, in a background
    #: thread, on its first search (:mod:`retrieval.store.warm`), when they fit in memory
    warm_on_open: bool = True
    #: MemAvailable the warm-up leaves free (MiB): it does not start, or stops, when it would leave less
    warm_reserve_mb: int = 2048


@runtime_checkable
class VectorStore(Protocol):
    """Cosine-distance vector collections with payload filters, one collection per encoder version.

    Vectors are ``(N, D)`` float32; ids are uuid strings (:func:`retrieval.ids.point_id`).
    """

    def ensure_collection(self, name: str, dim: int) -> None:
        """Create collection ``name`` (cosine, ``dim``) with payload indexes, or check an existing one's dim."""

    def has_collection(self, name: str) -> bool:
        """Whether collection (or alias) ``name`` exists."""

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Insert or replace points (idempotent: the same id twice is one point)."""

    def search(self, name: str, vector: np.ndarray, k: int, filter: SearchFilter | None = None) -> list[Hit]:
        """The ``k`` nearest points to ``vector`` (D,) by cosine similarity, best first."""

    def search_batch(
        self, name: str, vectors: np.ndarray, k: int, filters: Sequence[SearchFilter | None] | None = None
    ) -> list[list[Hit]]:
        """One :meth:`search` per row of ``vectors`` (Q, D), planned as one batch."""

    def retrieve(self, name: str, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of ``ids`` as (len(ids), D) float32, in order; raises if any id is missing."""

    def retrieve_existing(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of those ``ids`` that exist, by id."""

    def vectors_by_image_ids(self, name: str, image_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, dict[str, Any]]]:
        """Vectors and payloads by payload ``image_id`` (stored-id queries without a SQL round trip)."""

    def vector_matrix(self, name: str, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors by payload ``image_id`` as one (N, D) float32 matrix in the order of ``image_ids`` (repeats
        allowed; zero rows where missing, e.g. for id 0) and a (N,) bool mask of the ids found: the batch read behind
        pair queries."""

    def count(self, name: str) -> int:
        """Number of points."""

    def list_ids(self, name: str) -> list[str]:
        """All point ids."""

    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Delete points (missing ids are ignored)."""

    def optimize(self, name: str) -> None:
        """Build indexes after bulk writes (blocking for the embedded backend; a no-op on a server)."""

    def set_alias(self, alias: str, name: str) -> None:
        """Point ``alias`` at collection ``name`` (replacing the previous target)."""

    def resolve(self, alias: str) -> str:
        """The collection an alias (or a collection name) refers to."""

    def drop_collection(self, name: str) -> None:
        """Delete a collection and its points."""

    def close(self) -> None:
        """Flush and release resources."""


def as_matrix(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Validate ``vectors`` as a C-contiguous (N, D) float32 matrix with finite values."""
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"vectors have dimension {arr.shape[1]}, the collection has {dim}")
    if not np.isfinite(arr).all():
        raise ValueError("vectors contain NaN or infinity")
    return arr


def stack_found(name: str, ids: Sequence[str], found: dict[str, np.ndarray], dim: int) -> np.ndarray:
    """Stack the vectors of ``ids`` in order, from a ``retrieve_existing`` answer; every id must be there.

    Raises:
        VectorStoreError: Some points are missing (the SQL side says they should exist: drift).
    """
    missing = [i for i in ids if str(i) not in found]
    if missing:
        raise VectorStoreError(
            f"{len(missing)} point(s) missing from collection {name!r} (first: {missing[0]}): "
            "run `histoquery doctor --repair`"
        )
    if not ids:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([found[str(i)] for i in ids])


def matrix_from(
    image_ids: np.ndarray, found: dict[int, tuple[np.ndarray, dict[str, Any]]], dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """A ``vector_matrix`` answer from a ``vectors_by_image_ids`` one: (N, D) rows in order and the found mask."""
    ids = np.asarray(image_ids, dtype=np.int64)
    rows = np.zeros((ids.size, dim), dtype=np.float32)
    mask = np.array([i in found for i in ids.tolist()], dtype=bool)
    hit = np.flatnonzero(mask)
    if hit.size:
        rows[hit] = np.stack([found[int(ids[j])][0] for j in hit])
    return rows, mask


def batch_filters(n: int, filters: Sequence[SearchFilter | None] | None) -> list[SearchFilter | None]:
    """One filter per query of a batch search (None = no filter for any); a length mismatch is an error."""
    flts: list[SearchFilter | None] = list(filters) if filters is not None else [None] * n
    if len(flts) != n:
        raise VectorStoreError(f"search_batch got {n} vectors but {len(flts)} filters")
    return flts
