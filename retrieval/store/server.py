"""Server backend: ``qdrant-client`` to a Qdrant server or cluster by URL.

Tests run it against ``QdrantClient(":memory:")`` (qdrant-client's local mode implements the server API). Local
mode is never used as the product's embedded store: it is brute force over pickled rows (see docs/retrieval.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from retrieval.errors import VectorStoreError
from retrieval.store.base import (
    PAYLOAD_INDEXES,
    CollectionConfig,
    Hit,
    SearchFilter,
    as_matrix,
    batch_filters,
    matrix_from,
    stack_found,
)

log = logging.getLogger(__name__)

_UPSERT_CHUNK = 512


def to_server_filter(flt: SearchFilter | None) -> models.Filter | None:
    """Translate a :class:`SearchFilter` into a qdrant-client filter (None when it is empty)."""
    if flt is None or flt.is_empty():
        return None
    must: list[Any] = [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in flt.must().items()]
    must_not: list[Any] = [
        models.FieldCondition(key=k, match=models.MatchAny(any=v)) for k, v in flt.must_not().items()
    ]
    return models.Filter(must=must or None, must_not=must_not or None)


class ServerVectorStore:
    """:class:`retrieval.store.base.VectorStore` over a :class:`qdrant_client.QdrantClient`."""

    def __init__(self, client: QdrantClient, config: CollectionConfig | None = None) -> None:
        self.client = client
        self.config = config or CollectionConfig()

    @classmethod
    def from_url(
        cls, url: str, api_key: str | None = None, config: CollectionConfig | None = None
    ) -> ServerVectorStore:
        """Connect to a Qdrant server (``http://qdrant:6333``)."""
        return cls(QdrantClient(url=url, api_key=api_key, timeout=60), config)

    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def resolve(self, alias: str) -> str:
        aliases = self._aliases()
        if alias in aliases:
            return aliases[alias]
        if self.client.collection_exists(alias):
            return alias
        raise VectorStoreError(f"no vector collection or alias {alias!r} on the Qdrant server")

    def has_collection(self, name: str) -> bool:
        return name in self._aliases() or bool(self.client.collection_exists(name))

    def dim(self, name: str) -> int:
        """Vector dimension of a collection (or alias)."""
        info = self.client.get_collection(self.resolve(name))
        vectors = info.config.params.vectors
        if isinstance(vectors, dict):
            vectors = vectors[""]
        assert vectors is not None
        return int(vectors.size)

    def ensure_collection(self, name: str, dim: int) -> None:
        if self.client.collection_exists(name):
            have = self.dim(name)
            if have != dim:
                raise VectorStoreError(
                    f"collection {name!r} holds {have}-d vectors, not {dim}-d: register the encoder under another name"
                )
            return
        quant = None
        if self.config.quantization == "int8":
            quant = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
            )
        self.client.create_collection(
            collection_name=name,
            vectors_config=models.VectorParams(
                size=dim, distance=models.Distance.COSINE, on_disk=True if self.config.vectors_on_disk else None
            ),
            hnsw_config=models.HnswConfigDiff(
                m=self.config.hnsw_m,
                ef_construct=self.config.hnsw_ef_construct,
                full_scan_threshold=self.config.full_scan_threshold_kb,
            ),
            quantization_config=quant,
        )
        for field_name, kind in PAYLOAD_INDEXES.items():
            # integer fields are only matched exactly: a lookup index without the range part (as the embedded store)
            schema: models.PayloadSchemaType | models.IntegerIndexParams = (
                models.PayloadSchemaType.KEYWORD
                if kind == "keyword"
                else models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=True, range=False)
            )
            self.client.create_payload_index(name, field_name=field_name, field_schema=schema)
        log.info("created server collection %s (%d-d, cosine)", name, dim)

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        arr = as_matrix(vectors, self.dim(name))
        if not (len(ids) == len(arr) == len(payloads)):
            raise VectorStoreError(f"upsert got {len(ids)} ids, {len(arr)} vectors, {len(payloads)} payloads")
        rows = arr.tolist()
        for start in range(0, len(rows), _UPSERT_CHUNK):
            stop = min(start + _UPSERT_CHUNK, len(rows))
            points = [
                models.PointStruct(id=str(ids[i]), vector=rows[i], payload=dict(payloads[i]))
                for i in range(start, stop)
            ]
            self.client.upsert(collection_name=name, points=points, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.delete(name, points_selector=models.PointIdsList(points=[str(i) for i in ids]), wait=True)

    def optimize(self, name: str) -> None:
        """No-op: a Qdrant server optimises in the background."""
        self.resolve(name)

    def _params(self, exact: bool) -> models.SearchParams:
        # as in the embedded store: rescored int8 search ("off": not rescored; the server keeps its own page cache,
        # so "auto" rescores); exact mode bypasses the quantised copies
        rescore = self.config.rescore != "off"
        quant = models.QuantizationSearchParams(ignore=exact, rescore=rescore, oversampling=2.0)
        return models.SearchParams(hnsw_ef=self.config.hnsw_ef_search, exact=exact, quantization=quant)

    def search(
        self, name: str, vector: np.ndarray, k: int, filter: SearchFilter | None = None, exact: bool = False
    ) -> list[Hit]:
        vec = as_matrix(vector, self.dim(name))[0]
        res = self.client.query_points(
            collection_name=name,
            query=vec.tolist(),
            limit=int(k),
            query_filter=to_server_filter(filter),
            with_payload=True,
            search_params=self._params(exact),
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in res.points]

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
        requests = [
            models.QueryRequest(
                query=arr[i].tolist(),
                limit=int(k),
                filter=to_server_filter(flts[i]),
                with_payload=True,
                params=self._params(exact),
            )
            for i in range(len(arr))
        ]
        results = self.client.query_batch_points(collection_name=name, requests=requests)
        return [[Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points] for r in results]

    def retrieve_existing(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        records = self.client.retrieve(name, ids=[str(i) for i in ids], with_payload=False, with_vectors=True)
        out: dict[str, np.ndarray] = {}
        for rec in records:
            vec: Any = rec.vector
            if isinstance(vec, dict):
                vec = vec[""]
            out[str(rec.id)] = np.asarray(vec, dtype=np.float32)
        return out

    def vectors_by_image_ids(self, name: str, image_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, dict[str, Any]]]:
        """Vectors and payloads of points whose payload ``image_id`` is in ``image_ids`` (one indexed scroll)."""
        if not image_ids:
            return {}
        out: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
        wanted = [int(i) for i in image_ids]
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            flt = models.Filter(must=[models.FieldCondition(key="image_id", match=models.MatchAny(any=chunk))])
            records, _ = self.client.scroll(
                name, scroll_filter=flt, limit=2 * len(chunk) + 8, with_payload=True, with_vectors=True
            )
            for rec in records:
                vec: Any = rec.vector
                if isinstance(vec, dict):
                    vec = vec[""]
                payload = dict(rec.payload or {})
                out.setdefault(int(payload["image_id"]), (np.asarray(vec, dtype=np.float32), payload))
        return out

    def vector_matrix(self, name: str, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of stored images as one (N, D) matrix and a found mask (one scroll per 1,000 distinct ids)."""
        ids = np.asarray(image_ids, dtype=np.int64)
        wanted = np.unique(ids[ids > 0]).tolist()
        found = self.vectors_by_image_ids(name, wanted) if wanted else {}
        return matrix_from(ids, found, self.dim(name))

    def retrieve(self, name: str, ids: Sequence[str]) -> np.ndarray:
        return stack_found(name, ids, self.retrieve_existing(name, ids), self.dim(name))

    def count(self, name: str) -> int:
        return int(self.client.count(name, exact=True).count)

    def list_ids(self, name: str) -> list[str]:
        out: list[str] = []
        offset: Any = None
        while True:
            records, offset = self.client.scroll(
                name, limit=10_000, offset=offset, with_payload=False, with_vectors=False
            )
            out.extend(str(r.id) for r in records)
            if offset is None:
                return out

    def set_alias(self, alias: str, name: str) -> None:
        if not self.client.collection_exists(name):
            raise VectorStoreError(f"cannot point alias {alias!r} at unknown collection {name!r}")
        ops: list[Any] = []
        if alias in self._aliases():
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=name, alias_name=alias)))
        try:
            self.client.update_collection_aliases(change_aliases_operations=ops)
        except (UnexpectedResponse, ValueError) as exc:
            raise VectorStoreError(f"cannot set alias {alias!r} -> {name!r}: {exc}") from exc

    def drop_collection(self, name: str) -> None:
        self.client.delete_collection(self.resolve(name))

    def close(self) -> None:
        self.client.close()
