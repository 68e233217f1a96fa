"""The retrieval API: pair decisions ("same category?") and top-k neighbours ("what looks like this?").

Example::

    from retrieval.api import Retrieval
    from retrieval.settings import get_settings

    with Retrieval.from_settings(get_settings()) as r:
        print(r.pair(12, "query.png"))            # PairResult(cos=..., d=..., same=..., threshold_cos=...)
        for n in r.top_k(12, k=5, exclude_same_group=True):
            print(n.image_id, n.score, n.label)
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from retrieval.catalog import active_encoder_version
from retrieval.errors import CheckpointChangedError, EmptyCollectionError, RetrievalError
from retrieval.groups import image_group, slide_group
from retrieval.models import EncoderVersion, Image
from retrieval.resolve import (
    QueryInput,
    Resolved,
    describe,
    missing_image_errors,
    resolve_queries,
    stored_ids_by_path,
)
from retrieval.store.base import Hit, SearchFilter, VectorStore
from retrieval.thresholds import Threshold, ThresholdSource, resolve_threshold

if TYPE_CHECKING:
    from retrieval.settings import Settings
    from training.encoder import Encoder

log = logging.getLogger(__name__)

#: Pairs per chunk of :meth:`Retrieval.pair_batch` (bounds memory: 2 x 4,096 x D float32 rows at a time)
PAIR_CHUNK = 4096
_MAX_ID = 2**62  # larger "ids" go through resolve(), which reports them as unknown


@dataclass(frozen=True)
class PairResult:
    """The answer to "are a and b the same category?".

    Attributes:
        a, b: the queries, described (``id:12`` or a file path).
        cos: cosine similarity of the two vectors.
        d: the study's distance d = 2 - 2·cos.
        same: the decision, ``cos >= threshold_cos``.
        threshold_cos, threshold_d: the threshold used, in both conventions.
        threshold_source: ``user``, ``calibrated`` (stored on the encoder version) or ``study-default`` (d=0.705).
        error: for batch rows that could not be answered, the reason (then cos/d are NaN and same is False).
    """

    a: str
    b: str
    cos: float
    d: float
    same: bool
    threshold_cos: float
    threshold_d: float
    threshold_source: ThresholdSource
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Neighbour:
    """One top-k result with its stored metadata."""

    rank: int
    image_id: int
    score: float
    d: float
    dataset: str | None
    label: str | None
    slide_id: int | None
    source_path: str | None
    level: int | None
    x: int | None
    y: int | None
    tile_size: int | None
    point_id: str
    group: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def group_by_slide(neighbours: Sequence[Neighbour]) -> dict[int | None, list[Neighbour]]:
    """Group results by slide (``None``: images that are not slide tiles), keeping rank order within groups."""
    groups: dict[int | None, list[Neighbour]] = {}
    for n in neighbours:
        groups.setdefault(n.slide_id, []).append(n)
    return groups


def load_encoder(
    checkpoint_path: str | Path,
    *,
    device: str | None = None,
    expected_sha256: str | None = None,
    expected_dim: int | None = None,
) -> Encoder:
    """The encoder of an encoder version's checkpoint (for callers that may not import ``training`` directly).

    Args:
        checkpoint_path: the version's checkpoint file.
        device: torch device (None = auto).
        expected_sha256: the sha256 the version was registered with; a file that differs is refused, as ingestion
            refuses it (its vectors would not be comparable with the stored ones).
        expected_dim: the version's vector size; a checkpoint giving another size is refused.

    Raises:
        CheckpointChangedError: the file's sha256 is not ``expected_sha256``, or its dimension not ``expected_dim``.
    """
    from training.encoder import Encoder

    encoder = Encoder.from_checkpoint(checkpoint_path, device=device)
    if expected_sha256 is not None and encoder.checkpoint_sha256 != expected_sha256:
        raise CheckpointChangedError(
            f"checkpoint {checkpoint_path} changed since its encoder version was registered (sha256 "
            f"{encoder.checkpoint_sha256[:12]}... instead of {expected_sha256[:12]}...): its vectors would not match "
            "the stored ones. Put the original file back, or register the new file as a new version "
            "(`histoquery reembed --checkpoint CKPT --name NEW --activate`)"
        )
    if expected_dim is not None and encoder.dim != expected_dim:
        raise CheckpointChangedError(
            f"checkpoint {checkpoint_path} gives {encoder.dim}-d vectors, its encoder version stores {expected_dim}-d"
        )
    return encoder


class Retrieval:
    """Pair and top-k queries against one encoder version (the active one by default).

    Build it from settings (:meth:`from_settings`, owns its connections: use ``with`` or :meth:`close`) or from
    an existing session + store + version (+ optional encoder, loaded lazily from the version's checkpoint).
    """

    def __init__(
        self,
        *,
        session: Session,
        store: VectorStore,
        version: EncoderVersion | None = None,
        encoder: Encoder | None = None,
        device: str | None = None,
        max_image_pixels: int | None = None,
    ) -> None:
        self.session = session
        self.store = store
        self.version = version if version is not None else active_encoder_version(session=session)
        self._encoder = encoder
        self._device = device
        self.max_image_pixels = max_image_pixels
        self._owned: list[Any] = []

    @classmethod
    def from_settings(cls, settings: Settings, *, encoder_name: str | None = None) -> Retrieval:
        """Open the database and vector store named by ``settings`` and select the encoder version."""
        from retrieval.db import engine_for, require_schema, session_factory
        from retrieval.store import open_vector_store

        engine: Engine = engine_for(settings.db_url)  # the process's one engine for this database (shared)
        require_schema(engine)
        session = session_factory(engine)()
        store = open_vector_store(settings)
        try:
            version = active_encoder_version(session=session, name=encoder_name or settings.active_encoder)
        except RetrievalError:
            session.close()
            store.close()
            raise
        obj = cls(
            session=session,
            store=store,
            version=version,
            device=None if settings.device == "auto" else settings.device,
            max_image_pixels=settings.max_image_pixels,
        )
        obj._owned = [session, store]
        return obj

    def close(self) -> None:
        """Release what :meth:`from_settings` opened."""
        for thing in self._owned:
            thing.close()
        self._owned = []

    def __enter__(self) -> Retrieval:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- encoder and vectors -------------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The version's encoder, loaded on first use (only needed for queries that are not stored images)."""
        if self._encoder is None:
            self._encoder = load_encoder(
                self.version.checkpoint_path,
                device=self._device,
                expected_sha256=self.version.checkpoint_sha256,
                expected_dim=self.version.dim,
            )
        return self._encoder

    def resolve(self, queries: Sequence[QueryInput]) -> Resolved:
        """Vectors of ``queries`` (per-query errors collected, not raised)."""
        return resolve_queries(
            queries,
            self.version,
            session=self.session,
            store=self.store,
            encoder=lambda: self.encoder,
            max_pixels=self.max_image_pixels,
        )

    def vectors(self, queries: Sequence[QueryInput]) -> np.ndarray:
        """(N, D) vectors of ``queries``; raises the first error."""
        res = self.resolve(queries)
        res.raise_first()
        return res.vectors

    def threshold(self, threshold: float | None = None, threshold_d: float | None = None) -> Threshold:
        """The threshold a decision uses: the user's (either convention), else calibrated, else the study's."""
        return resolve_threshold(threshold, threshold_d, self.version.threshold_cos)

    # -- pairs ---------------------------------------------------------------------------------------------------
    def pair(
        self, a: QueryInput, b: QueryInput, threshold: float | None = None, threshold_d: float | None = None
    ) -> PairResult:
        """Compare two images (stored ids, files, PIL images or arrays). Raises on a bad query."""
        result = self.pair_batch([(a, b)], threshold=threshold, threshold_d=threshold_d, strict=True)[0]
        return result

    def pair_batch(
        self,
        pairs: Sequence[tuple[QueryInput, QueryInput]],
        threshold: float | None = None,
        threshold_d: float | None = None,
        strict: bool = False,
    ) -> list[PairResult]:
        """Compare many pairs at once, at array speed for stored images.

        Per chunk of :data:`PAIR_CHUNK` pairs: one indexed SQL lookup for the file paths, one store read for the
        vectors of every stored image (ids and stored files), one matrix operation for the scores; files that are
        not stored, PIL images and arrays go through :meth:`resolve` (embedded in model batches). Memory stays
        bounded by the chunk, whatever the number of pairs.

        Args:
            pairs: (a, b) queries.
            threshold, threshold_d: optional user threshold (cosine or distance; not both).
            strict: raise the first bad query instead of answering it with ``error`` set.
        """
        thr = self.threshold(threshold, threshold_d)
        out: list[PairResult] = []
        for start in range(0, len(pairs), PAIR_CHUNK):
            out.extend(self._pair_chunk(pairs[start : start + PAIR_CHUNK], thr, strict))
        return out

    def _pair_chunk(
        self, pairs: Sequence[tuple[QueryInput, QueryInput]], thr: Threshold, strict: bool
    ) -> list[PairResult]:
        flat: list[QueryInput] = [q for pair in pairs for q in pair]
        vectors, errors = self._pair_vectors(flat)
        if strict and errors:
            raise errors[min(errors)]
        cos = np.clip(np.einsum("ij,ij->i", vectors[0::2], vectors[1::2]), -1.0, 1.0).tolist()
        out: list[PairResult] = []
        for i, (a, b) in enumerate(pairs):
            err = errors.get(2 * i) or errors.get(2 * i + 1)
            c = cos[i] if err is None else float("nan")
            out.append(
                PairResult(
                    a=describe(a),
                    b=describe(b),
                    cos=c,
                    d=2.0 - 2.0 * c,
                    same=bool(err is None and c >= thr.cos),
                    threshold_cos=thr.cos,
                    threshold_d=thr.d,
                    threshold_source=thr.source,
                    error=None if err is None else str(err),
                )
            )
        return out

    def _pair_vectors(self, queries: Sequence[QueryInput]) -> tuple[np.ndarray, dict[int, RetrievalError]]:
        """(N, D) vectors of ``queries`` (rows of failed queries are meaningless) and errors by query index.

        Stored ids and stored files: their image ids (files in one bulk SQL lookup), then one
        ``store.vector_matrix`` read in query order; ids the store lacks get the errors :meth:`resolve` gives (unknown,
        not embedded, point lost: one SQL query for all). Everything else goes through :meth:`resolve`.
        """
        n = len(queries)
        if n and all(type(q) is int for q in queries):  # all stored ids (the common batch): one array conversion
            image_ids = np.array(queries, dtype=object)
            image_ids = np.where((image_ids > 0) & (image_ids < _MAX_ID), image_ids, 0).astype(np.int64)
        else:
            image_ids = np.zeros(n, dtype=np.int64)  # 0: not a stored image
            path_at = [i for i, q in enumerate(queries) if isinstance(q, str | Path)]
            if path_at:
                files = [q for q in queries if isinstance(q, str | Path)]  # the queries at path_at, typed
                found_ids = stored_ids_by_path(files, self.version, session=self.session)
                image_ids[path_at] = [0 if iid is None else iid for iid in found_ids]
            for i, q in enumerate(queries):
                if isinstance(q, int | np.integer) and not isinstance(q, bool) and 0 < int(q) < _MAX_ID:
                    image_ids[i] = int(q)
        vectors, found = self.store.vector_matrix(self.version.collection, image_ids)
        errors: dict[int, RetrievalError] = {}
        lost = np.flatnonzero(~found & (image_ids > 0))
        if lost.size:
            reasons = missing_image_errors(image_ids[lost].tolist(), self.version, session=self.session)
            errors.update({i: reasons[int(image_ids[i])] for i in lost.tolist()})
        rest = np.flatnonzero(image_ids == 0).tolist()
        if rest:
            res = self.resolve([queries[i] for i in rest])
            vectors[rest] = res.vectors
            errors.update({rest[j]: err for j, err in res.errors.items()})
        return vectors, errors

    # -- top-k ---------------------------------------------------------------------------------------------------
    def top_k(
        self,
        query: QueryInput,
        k: int = 10,
        filter: SearchFilter | None = None,
        exclude_same_group: bool = False,
        exclude_self: bool = True,
        *,
        exclude_same_slide: bool | None = None,
    ) -> list[Neighbour]:
        """The ``k`` most similar stored images to ``query``, best first.

        Args:
            query: stored image id, image file, PIL image or array.
            k: number of results (1..1000).
            filter: restrict by dataset / label / slide.
            exclude_same_group: never return images of the query's group (stored queries): an image's group is its
                ``group`` column (patient / case / source tile, from ``--groups``, ``--group-from`` or a manifest),
                and a tile without one is grouped by its slide (``retrieval.groups.image_group``), so a tile query
                never gets tiles of its own slide back. An image without a group excludes nothing but itself.
            exclude_self: never return the query image itself (stored queries).
            exclude_same_slide: deprecated old name of ``exclude_same_group`` (a DeprecationWarning).

        Raises:
            EmptyCollectionError: nothing is stored under the encoder version.
        """
        exclude_same_group = _old_exclude_same_slide(exclude_same_group, exclude_same_slide)
        return self.top_k_batch([query], k, filter, exclude_same_group, exclude_self, strict=True)[0]

    def top_k_batch(
        self,
        queries: Sequence[QueryInput],
        k: int = 10,
        filter: SearchFilter | None = None,
        exclude_same_group: bool = False,
        exclude_self: bool = True,
        strict: bool = True,
        *,
        exclude_same_slide: bool | None = None,
    ) -> list[list[Neighbour]]:
        """:meth:`top_k` for many queries in one planned batch (bad queries get ``[]`` unless ``strict``)."""
        exclude_same_group = _old_exclude_same_slide(exclude_same_group, exclude_same_slide)
        if not 1 <= int(k) <= 1000:
            raise RetrievalError(f"k={k} is out of range: ask for 1 to 1000 neighbours")
        res = self.resolve(queries)
        if strict:
            res.raise_first()
        base = filter or SearchFilter()
        good = [i for i in range(len(queries)) if i not in res.errors]
        q_groups = (
            self._groups({int(res.image_ids[i] or 0) for i in good if res.image_ids[i] is not None})
            if exclude_same_group
            else {}
        )
        filters: list[SearchFilter | None] = []
        for i in good:
            flt = base
            if exclude_self and res.image_ids[i] is not None:
                flt = dataclasses.replace(flt, exclude_image_ids=(*flt.exclude_image_ids, int(res.image_ids[i] or 0)))
            group = q_groups.get(int(res.image_ids[i] or 0)) if res.image_ids[i] is not None else None
            if group is not None:
                flt = dataclasses.replace(flt, exclude_groups=(*flt.exclude_groups, group))
                slide = res.slide_ids[i]
                if slide is not None and group == slide_group(int(slide)):
                    # grouped by its slide: points stored without a "group" payload are excluded by slide too
                    flt = dataclasses.replace(flt, exclude_slide_ids=(*flt.exclude_slide_ids, int(slide)))
            filters.append(flt)
        hits = self.store.search_batch(self.version.collection, res.vectors[good], int(k), filters) if good else []
        if good and not any(hits) and self.store.count(self.version.collection) == 0:
            raise EmptyCollectionError(
                f"collection {self.version.collection!r} of encoder version {self.version.name!r} is empty: "
                "ingest images first (`histoquery ingest PATH --dataset NAME`)"
            )
        # source path / tile coordinates ride in the payload; SQL only for points written without them
        rows = self._image_rows(
            {
                int(h.payload["image_id"])
                for hs in hits
                for h in hs
                if "image_id" in h.payload and "source_path" not in h.payload
            }
        )
        if q_groups:  # points stored before the group field have no "group" payload: drop same-group ones here
            unknown = self._groups(
                {int(h.payload.get("image_id", -1)) for hs in hits for h in hs if "group" not in h.payload}
            )
            for j, i in enumerate(good):
                g = q_groups.get(int(res.image_ids[i] or 0)) if res.image_ids[i] is not None else None
                if g is not None and unknown:
                    hits[j] = [
                        h
                        for h in hits[j]
                        if "group" in h.payload or unknown.get(int(h.payload.get("image_id", -1))) != g
                    ]
        out: list[list[Neighbour]] = [[] for _ in queries]
        for i, hs in zip(good, hits, strict=True):
            out[i] = [self._neighbour(rank, h, rows) for rank, h in enumerate(hs, start=1)]
        return out

    def _groups(self, ids: set[int]) -> dict[int, str]:
        """Group of each stored image that has one (``retrieval.groups.image_group``), in one light query."""
        if not ids:
            return {}
        stmt = select(Image.id, Image.group, Image.slide_id).where(
            Image.id.in_(sorted(ids)), (Image.group.is_not(None)) | (Image.slide_id.is_not(None))
        )
        found = {int(i): image_group(g, s) for i, g, s in self.session.execute(stmt).all()}
        return {i: g for i, g in found.items() if g is not None}

    def _image_rows(self, ids: set[int]) -> dict[int, tuple[Any, ...]]:
        """(source_path, level, x, y, tile_size) of the hit images, in one light query."""
        if not ids:
            return {}
        stmt = select(Image.id, Image.source_path, Image.level, Image.x, Image.y, Image.tile_size).where(
            Image.id.in_(sorted(ids))
        )
        return {int(row[0]): tuple(row[1:]) for row in self.session.execute(stmt).all()}

    @staticmethod
    def _neighbour(rank: int, hit: Hit, rows: dict[int, tuple[Any, ...]]) -> Neighbour:
        p = hit.payload
        image_id = int(p.get("image_id", -1))
        if "source_path" in p:
            source_path, level, x, y, tile_size = (p.get(f) for f in ("source_path", "level", "x", "y", "tile_size"))
        else:
            source_path, level, x, y, tile_size = rows.get(image_id, (None,) * 5)
        return Neighbour(
            rank=rank,
            image_id=image_id,
            score=hit.score,
            d=2.0 - 2.0 * hit.score,
            dataset=p.get("dataset"),
            label=p.get("label"),
            slide_id=p.get("slide_id"),
            source_path=source_path,
            level=level,
            x=x,
            y=y,
            tile_size=tile_size,
            point_id=hit.id,
            group=p.get("group"),
        )


def _old_exclude_same_slide(exclude_same_group: bool, exclude_same_slide: bool | None) -> bool:
    """``exclude_same_group``, or the deprecated old keyword ``exclude_same_slide`` (same idea, old name)."""
    if exclude_same_slide is None:
        return bool(exclude_same_group)
    warnings.warn(
        "top_k(exclude_same_slide=...) is deprecated: use exclude_same_group=... (a tile's group is its slide "
        "unless group rules gave it one)",
        DeprecationWarning,
        stacklevel=3,
    )
    return bool(exclude_same_group or exclude_same_slide)
