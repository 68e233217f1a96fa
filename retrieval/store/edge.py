"""Embedded backend: ``qdrant-edge-py`` (the Qdrant engine in-process, on disk). One shard per collection.

Layout under ``root``: ``collections/<name>/`` (one EdgeShard each) and ``catalog.json`` (dimensions, aliases).
The engine has no background optimiser: :meth:`EdgeVectorStore.optimize` must run after bulk writes (the store
also runs it on :meth:`close` when points were written since the last optimisation).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import qdrant_edge as qe

from retrieval.errors import StoreBusyError, VectorStoreError
from retrieval.store.base import (
    PAYLOAD_INDEXES,
    CollectionConfig,
    Hit,
    SearchFilter,
    as_matrix,
    batch_filters,
    stack_found,
)
from retrieval.store.mirror import VectorMirror, remove_mirror
from retrieval.store.warm import PageCacheWarmer, WarmResult, warm_files

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
_UPSERT_CHUNK = 512


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise VectorStoreError(f"bad collection name {name!r}: use letters, digits, '_', '-', '.'")
    return name


def to_edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    """Translate a :class:`SearchFilter` into a qdrant-edge filter (None when it is empty)."""
    if flt is None or flt.is_empty():
        return None
    must: list[Any] = [qe.FieldCondition(k, match=qe.MatchValue(v)) for k, v in flt.must().items()]
    must_not: list[Any] = [qe.FieldCondition(k, match=qe.MatchAny(v)) for k, v in flt.must_not().items()]
    return qe.Filter(must=must or None, must_not=must_not or None)


def _index_schema(kind: str) -> qe.PayloadSchemaType | qe.IntegerIndexParams:
    """The payload index of a :data:`PAYLOAD_INDEXES` kind. Integer fields are only matched exactly (``MatchValue``,
    ``MatchAny``), so their index is lookup-only: no range index to keep up on every upsert."""
    if kind == "keyword":
        return qe.PayloadSchemaType.Keyword
    return qe.IntegerIndexParams(lookup=True, range=False)


def _image_id(payload: dict[str, Any]) -> int:
    """The payload's integer ``image_id`` (0 when absent: such points are not mirrored)."""
    value = payload.get("image_id")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _row(arr: np.ndarray, i: int) -> list[float]:
    """Row ``i`` of a C-contiguous float32 matrix as the bindings' vector: a memoryview, a sequence of Python floats
    (typed as the list the stubs name; the bindings copy its values when the point is built)."""
    return cast(list[float], memoryview(arr[i]))


def _open_shard(path: Path) -> qe.EdgeShard:
    try:
        return qe.EdgeShard.load(str(path))
    except Exception as exc:  # the bindings raise a bare Exception
        if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
            raise StoreBusyError(
                f"the embedded vector store {path} is open in another process (dashboard, worker, CLI): qdrant-edge "
                "allows one process per store. Stop that process, run the command inside it, or use the server "
                "backend (HISTOQUERY_VECTOR_BACKEND=server)"
            ) from exc
        raise VectorStoreError(f"cannot open embedded vector collection {path}: {exc}") from exc


class EdgeVectorStore:
    """:class:`retrieval.store.base.VectorStore` on embedded Qdrant Edge shards under ``root``."""

    def __init__(self, root: str | Path, config: CollectionConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or CollectionConfig()
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, qe.EdgeShard] = {}
        self._dirty: set[str] = set()
        self._lock = threading.RLock()
        self._cat: dict[str, Any] | None = None  # cached catalog.json, reloaded when its mtime changes
        self._cat_mtime: int = -1
        self._search_params: dict[tuple[bool, bool], qe.SearchParams] = {}
        self._mirrors: dict[str, VectorMirror] = {}
        self._warmers: dict[str, PageCacheWarmer] = {}
        self._on_disk: dict[str, bool] = {}

    # -- catalog (dims + aliases) -------------------------------------------------------------------------------
    def _catalog_path(self) -> Path:
        return self.root / "catalog.json"

    def _catalog(self) -> dict[str, Any]:
        path = self._catalog_path()
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {"collections": {}, "aliases": {}}
        if self._cat is not None and mtime == self._cat_mtime:
            return self._cat
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise VectorStoreError(f"vector store catalog {path} is unreadable ({exc}): restore or delete it") from exc
        self._cat, self._cat_mtime = data, mtime
        return data

    def _write_catalog(self, data: dict[str, Any]) -> None:
        path = self._catalog_path()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
        self._cat = None

    # -- collections ---------------------------------------------------------------------------------------------
    def _edge_config(self, dim: int) -> qe.EdgeConfig:
        quant = None
        if self.config.quantization == "int8":
            quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Cosine,
                memory=qe.Memory.Cold if self.config.vectors_on_disk else None,  # None: the engine default, cached
            ),
            hnsw_config=qe.HnswIndexConfig(
                m=self.config.hnsw_m,
                ef_construct=self.config.hnsw_ef_construct,
                full_scan_threshold=self.config.full_scan_threshold_kb,
            ),
            quantization_config=quant,
        )

    def has_collection(self, name: str) -> bool:
        cat = self._catalog()
        return name in cat["collections"] or name in cat["aliases"]

    def ensure_collection(self, name: str, dim: int) -> None:
        _check_name(name)
        with self._lock:
            cat = self._catalog()
            known = cat["collections"].get(name)
            if known is not None:
                if int(known["dim"]) != dim:
                    raise VectorStoreError(
                        f"collection {name!r} holds {known['dim']}-d vectors, not {dim}-d: register the encoder "
                        "under another name"
                    )
                self._shard(name)
                return
            path = self.root / "collections" / name
            if path.exists():
                shutil.rmtree(path)  # a half-created shard from an interrupted call
            self._drop_mirror(name)  # rows of an earlier collection of the same name
            self._on_disk.pop(name, None)
            shard = qe.EdgeShard.create(str(path), self._edge_config(dim))
            for field_name, kind in PAYLOAD_INDEXES.items():
                shard.update(qe.UpdateOperation.create_field_index(field_name, _index_schema(kind)))
            shard.flush()
            self._shards[name] = shard
            cat["collections"][name] = {"dim": dim}
            self._write_catalog(cat)
            log.info("created embedded collection %s (%d-d, cosine) at %s", name, dim, path)

    def _shard(self, name: str) -> qe.EdgeShard:
        with self._lock:
            cat = self._catalog()
            real = cat["aliases"].get(name, name)
            shard = self._shards.get(real)
            if shard is not None:
                return shard
            if real not in cat["collections"]:
                raise VectorStoreError(
                    f"no vector collection {name!r} in {self.root}: register an encoder and ingest images first"
                )
            shard = _open_shard(self.root / "collections" / real)
            self._shards[real] = shard
            return shard

    def _drop_mirror(self, real: str) -> None:
        mirror = self._mirrors.pop(real, None)
        if mirror is not None:
            mirror.close()
        remove_mirror(self.root / "mirrors" / f"{real}.f32")

    def _mirror(self, name: str) -> VectorMirror:
        """The memory-mapped float copy of a collection (:mod:`retrieval.store.mirror`), opened on first use."""
        with self._lock:
            real = self.resolve(name)
            mirror = self._mirrors.get(real)
            if mirror is None:
                mirror = VectorMirror(self.root / "mirrors" / f"{real}.f32", self.dim(real))
                self._mirrors[real] = mirror
            return mirror

    def dim(self, name: str) -> int:
        """Vector dimension of a collection (or alias)."""
        cat = self._catalog()
        return int(cat["collections"][self.resolve(name)]["dim"])

    # -- writes --------------------------------------------------------------------------------------------------
    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        arr = as_matrix(vectors, self.dim(name))
        if not (len(ids) == len(arr) == len(payloads)):
            raise VectorStoreError(f"upsert got {len(ids)} ids, {len(arr)} vectors, {len(payloads)} payloads")
        shard = self._shard(name)
        mirror = self._mirror(name)
        image_ids = np.array([_image_id(p) for p in payloads], dtype=np.int64)
        for start in range(0, len(arr), _UPSERT_CHUNK):
            stop = min(start + _UPSERT_CHUNK, len(arr))
            # a memoryview of the float32 row: the bindings read its floats one by one without the 2,048 Python floats
            # a row's tolist() builds first (~40 % less CPU for the vector; the numpy row itself is slower still, as a
            # sequence of numpy scalars); the bindings copy each payload into the point, so it is passed as it is
            points = [qe.Point(str(ids[i]), _row(arr, i), payloads[i]) for i in range(start, stop)]
            shard.update(qe.UpdateOperation.upsert_points(points))
            # after the engine: a present row always has a point
            mirror.write(image_ids[start:stop], arr[start:stop], [str(i) for i in ids[start:stop]])
        self._dirty.add(self.resolve(name))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            shard = self._shard(name)
            records = shard.retrieve([str(i) for i in ids], qe.PayloadSelector.Include(["image_id"]), False)
            gone = np.array([_image_id(dict(r.payload or {})) for r in records], dtype=np.int64)
            self._mirror(name).clear(gone)  # before the engine: a present row never outlives its point
            shard.update(qe.UpdateOperation.delete_points([str(i) for i in ids]))
            self._dirty.add(self.resolve(name))

    def optimize(self, name: str) -> None:
        shard = self._shard(name)
        changed = shard.optimize()
        shard.flush()
        with self._lock:  # new segment files: the next search warms them (quick where the writes left them cached)
            warmer = self._warmers.pop(self.resolve(name), None)
        if warmer is not None:
            warmer.stop()
        self._mirror(name).flush()
        self._dirty.discard(self.resolve(name))
        log.debug("optimize(%s): segments changed=%s", name, changed)

    # -- page cache warm-up and rescoring of on-disk collections ---------------------------------------------------
    def vectors_on_disk(self, name: str) -> bool:
        """Whether collection (or alias) ``name`` keeps its float vectors on disk (read from its engine config, so
        it holds for collections created under other settings)."""
        real = self.resolve(name)
        known = self._on_disk.get(real)
        if known is None:
            path = self.root / "collections" / real / "edge_config.json"
            try:
                vectors = json.loads(path.read_text()).get("vectors", {}).get("", {})
            except (OSError, json.JSONDecodeError) as exc:
                raise VectorStoreError(f"cannot read the engine config {path} ({exc}): restore or recreate it") from exc
            known = vectors.get("memory") == "cold" or vectors.get("on_disk") is True
            self._on_disk[real] = known
        return known

    def warm(self, name: str) -> PageCacheWarmer | None:
        """Start (once per store) the page-cache warm-up of a collection whose float vectors are on disk
        (:mod:`retrieval.store.warm`); None for collections kept in RAM. Searches call it; returns the warmer."""
        real = self.resolve(name)
        with self._lock:
            warmer = self._warmers.get(real)
            if warmer is None and self.vectors_on_disk(real):
                files = warm_files(self.root / "collections" / real)
                warmer = PageCacheWarmer(real, files, self.config.warm_reserve_mb << 20).start()
                self._warmers[real] = warmer
            return warmer

    def warm_status(self, name: str) -> WarmResult | None:
        """The warm-up of ``name`` so far (None when none was started)."""
        warmer = self._warmers.get(self.resolve(name))
        return None if warmer is None else warmer.result

    def rescores(self, name: str) -> bool:
        """Whether a search of ``name`` now rescores the int8 candidates with the float vectors (``rescore``:
        "on", "off", or "auto": rescore, except an on-disk collection whose warm-up found that it does not fit in
        memory (skipped, or stopped when memory ran short): every search of it would read from disk, so it is
        answered in int8 order). While the warm-up runs, "auto" rescores: answers do not change when it ends."""
        if self.config.rescore != "auto":
            return self.config.rescore == "on"
        if not self.vectors_on_disk(name):
            return True
        warmer = self._warmers.get(self.resolve(name))
        return warmer is None or warmer.result.outcome in ("running", "done")

    def _before_search(self, name: str) -> bool:
        """Start the warm-up on a collection's first search (when enabled); whether this search rescores."""
        if self.config.warm_on_open and self.resolve(name) not in self._warmers:
            self.warm(name)
        return self.rescores(name)

    # -- reads ---------------------------------------------------------------------------------------------------
    def _params(self, exact: bool = False, rescore: bool = True) -> qe.SearchParams:
        cached = self._search_params.get((exact, rescore))
        if cached is not None:
            return cached
        # int8 collections: search the quantised copies, rescore the best 2k with float vectors (unless ``rescore``
        # is False: int8 order and scores); exact mode ignores the quantised copies altogether so that it stays
        # exact (params are ignored by unquantised collections)
        quant = qe.QuantizationSearchParams(ignore=exact, rescore=rescore, oversampling=2.0)
        params = qe.SearchParams(hnsw_ef=self.config.hnsw_ef_search, exact=exact, quantization=quant)
        self._search_params[(exact, rescore)] = params
        return params

    def _request(
        self, vector: np.ndarray, k: int, flt: SearchFilter | None, exact: bool, rescore: bool = True
    ) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=int(k),
            query=qe.Query.Nearest(vector.tolist()),
            filter=to_edge_filter(flt),
            with_payload=True,
            with_vector=False,
            params=self._params(exact, rescore),
        )

    def search(
        self, name: str, vector: np.ndarray, k: int, filter: SearchFilter | None = None, exact: bool = False
    ) -> list[Hit]:
        vec = as_matrix(vector, self.dim(name))[0]
        if exact:
            hits = self._exact_from_mirror(name, vec, k, filter)
            if hits is not None:
                return hits
        rescore = self._before_search(name)
        points = self._shard(name).query(self._request(vec, k, filter, exact, rescore))
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def _exact_from_mirror(self, name: str, vec: np.ndarray, k: int, flt: SearchFilter | None) -> list[Hit] | None:
        """Exact top-k as numpy brute force over the memory-mapped copy (one matrix-vector product), or None when
        the copy cannot answer: payload filters other than excluded images, a copy that does not hold exactly the
        engine's number of points, a zero query. The winners' payloads come from the engine by their point ids (one
        retrieve), which also proves that each of them is a stored point with that image id."""
        if flt is not None and (flt.must() or set(flt.must_not()) - {"image_id"}):  # only image ids are masked here
            return None
        norm = float(np.linalg.norm(vec))
        mirror = self._mirror(name)
        present = mirror.present_ids()
        shard = self._shard(name)
        if norm == 0.0 or present.size == 0 or present.size != int(shard.info().points_count):
            return None
        matrix = mirror.matrix()[: int(present[-1]) + 1]  # rows past the last stored image are holes
        scores = matrix @ (vec / norm)
        excluded = np.zeros(0, dtype=np.int64)
        if flt is not None and flt.exclude_image_ids:
            excluded = np.asarray(flt.exclude_image_ids, dtype=np.int64)
            excluded = np.unique(excluded[(excluded >= 0) & (excluded < len(scores))])
        if present.size == len(scores) - 1:  # no holes (rows 1..last all stored; row 0 never is): no mask pass
            scores[0] = -np.inf
            scores[excluded] = -np.inf
            n_ok = int(present.size - np.count_nonzero(excluded > 0))
        else:
            absent = np.ones(len(scores), dtype=bool)
            absent[present] = False
            absent[excluded] = True
            scores[absent] = -np.inf
            n_ok = int(len(scores) - np.count_nonzero(absent))
        take = min(int(k), n_ok)
        if take <= 0:
            return []
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top], kind="stable")]
        wanted = [int(i) for i in top]
        point_ids: list[Any] = mirror.point_ids(wanted)
        records = shard.retrieve(point_ids, True, False)  # by point id: µs, where a filtered scroll costs ms
        by_image = {_image_id(dict(r.payload or {})): r for r in records}
        if any(i not in by_image for i in wanted):
            log.warning("vector mirror of %s is out of step with the engine: exact search falls back to it", name)
            return None
        return [Hit(str(by_image[i].id), float(scores[i]), dict(by_image[i].payload or {})) for i in wanted]

    def search_batch(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        filters: Sequence[SearchFilter | None] | None = None,
        exact: bool = False,
    ) -> list[list[Hit]]:
        arr = as_matrix(vectors, self.dim(name))
        flts = batch_filters(len(arr), filters)
        if len(arr) == 0:
            return []
        if exact:
            return [self.search(name, arr[i], k, flts[i], exact=True) for i in range(len(arr))]
        shard = self._shard(name)
        rescore = self._before_search(name)
        if len(arr) == 1:  # a batch of one costs ~0.3 ms more than a plain query in the bindings
            results = [shard.query(self._request(arr[0], k, flts[0], exact, rescore))]
        else:
            results = shard.query_batch(
                qe.QueryBatchRequest([self._request(arr[i], k, flts[i], exact, rescore) for i in range(len(arr))])
            )
        return [[Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in res] for res in results]

    def retrieve_existing(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        records = self._shard(name).retrieve([str(i) for i in ids], False, True)
        out: dict[str, np.ndarray] = {}
        for rec in records:
            vec: Any = rec.vector
            if isinstance(vec, dict):
                vec = vec.get("")
            out[str(rec.id)] = np.asarray(vec, dtype=np.float32)
        return out

    def vectors_by_image_ids(self, name: str, image_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, dict[str, Any]]]:
        """Vectors and payloads of points whose payload ``image_id`` is in ``image_ids`` (one indexed scroll)."""
        return {i: (vec, payload) for i, (_, vec, payload) in self._points_by_image_ids(name, image_ids).items()}

    def _points_by_image_ids(
        self, name: str, image_ids: Sequence[int]
    ) -> dict[int, tuple[str, np.ndarray, dict[str, Any]]]:
        """(point id, vector, payload) by payload ``image_id``, one indexed scroll per 1,000 ids."""
        if not image_ids:
            return {}
        shard = self._shard(name)
        out: dict[int, tuple[str, np.ndarray, dict[str, Any]]] = {}
        wanted = [int(i) for i in image_ids]
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            flt = qe.Filter(must=[qe.FieldCondition("image_id", match=qe.MatchAny(chunk))])
            records, _ = shard.scroll(
                qe.ScrollRequest(limit=2 * len(chunk) + 8, filter=flt, with_payload=True, with_vector=True)
            )
            for rec in records:
                vec: Any = rec.vector
                if isinstance(vec, dict):
                    vec = vec.get("")
                payload = dict(rec.payload or {})
                out.setdefault(int(payload["image_id"]), (str(rec.id), np.asarray(vec, dtype=np.float32), payload))
        return out

    def vector_matrix(self, name: str, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of stored images as one (N, D) float32 matrix in the order of ``image_ids`` (repeats allowed,
        zero rows where missing) and a (N,) found mask.

        Rows come from the memory-mapped copy (:mod:`retrieval.store.mirror`: one numpy gather); ids it lacks are
        asked of the engine (one indexed scroll per 1,000) and copied into it, so the next read is fast.
        """
        ids = np.asarray(image_ids, dtype=np.int64)
        mirror = self._mirror(name)
        rows, found = mirror.read(ids)
        lacking = np.flatnonzero(~found & (ids > 0))
        if lacking.size:
            got = self._points_by_image_ids(name, np.unique(ids[lacking]).tolist())
            have = np.array([j for j in lacking.tolist() if int(ids[j]) in got], dtype=np.int64)
            if have.size:
                rows[have] = np.stack([got[int(ids[j])][1] for j in have.tolist()])
                found[have] = True
                mirror.write(ids[have], rows[have], [got[int(ids[j])][0] for j in have.tolist()])
                log.debug("vector mirror of %s: filled %d rows from the engine", name, have.size)
        return rows, found

    def retrieve(self, name: str, ids: Sequence[str]) -> np.ndarray:
        return stack_found(name, ids, self.retrieve_existing(name, ids), self.dim(name))

    def count(self, name: str) -> int:
        return int(self._shard(name).count(qe.CountRequest(exact=True)))

    def list_ids(self, name: str) -> list[str]:
        shard = self._shard(name)
        out: list[str] = []
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=10_000, with_payload=False, with_vector=False)
            )
            out.extend(str(r.id) for r in records)
            if offset is None:
                return out

    # -- aliases -------------------------------------------------------------------------------------------------
    def set_alias(self, alias: str, name: str) -> None:
        _check_name(alias)
        with self._lock:
            cat = self._catalog()
            if name not in cat["collections"]:
                raise VectorStoreError(f"cannot point alias {alias!r} at unknown collection {name!r}")
            if alias in cat["collections"]:
                raise VectorStoreError(f"alias {alias!r} clashes with a collection name")
            cat["aliases"][alias] = name
            self._write_catalog(cat)

    def resolve(self, alias: str) -> str:
        cat = self._catalog()
        if alias in cat["aliases"]:
            return str(cat["aliases"][alias])
        if alias in cat["collections"]:
            return alias
        raise VectorStoreError(f"no vector collection or alias {alias!r} in {self.root}")

    def drop_collection(self, name: str) -> None:
        with self._lock:
            cat = self._catalog()
            real = cat["aliases"].get(name, name)
            shard = self._shards.pop(real, None)
            if shard is not None:
                shard.close()
            self._drop_mirror(real)
            cat["collections"].pop(real, None)
            cat["aliases"] = {a: c for a, c in cat["aliases"].items() if c != real}
            self._write_catalog(cat)
            warmer = self._warmers.pop(real, None)
            if warmer is not None:
                warmer.stop()
            self._on_disk.pop(real, None)
            shutil.rmtree(self.root / "collections" / real, ignore_errors=True)
            self._dirty.discard(real)

    def close(self) -> None:
        with self._lock:
            for warmer in self._warmers.values():
                warmer.stop()
            self._warmers.clear()
            for name, shard in list(self._shards.items()):
                if name in self._dirty:
                    shard.optimize()
                shard.flush()
                shard.close()
            self._shards.clear()
            self._dirty.clear()
            for mirror in self._mirrors.values():
                mirror.close()
            self._mirrors.clear()

    def __enter__(self) -> EdgeVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
