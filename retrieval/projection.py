"""2-D projections (PCA, UMAP) of the stored embeddings of one encoder version, cached on disk.

The dashboard's cluster map shows these. Large collections are sampled: a seeded sample of the stored image ids
drawn in SQL (:func:`sample_image_ids`, never a read of every row) and the vectors of those ids only
(:func:`read_vectors`), so memory is bounded by ``max_points`` x D whatever the collection's size. A projection is
computed once per (encoder version, method, sample size, seed) and kept under ``<settings.home>/projections/``. The
cache is reused as long as the number of stored vectors of that encoder version is unchanged; ingesting more images
(or re-embedding) makes the next request recompute it.

PCA is what the study plotted; UMAP is run on the top 50 principal components (``n_neighbors=15``, cosine metric),
which keeps it fast on 2 CPU cores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.orm import Session

from retrieval.errors import EmptyCollectionError, RetrievalError
from retrieval.models import Embedding, EncoderVersion

logger = logging.getLogger(__name__)

Method = Literal["pca", "umap"]
METHODS: tuple[Method, ...] = ("pca", "umap")
DEFAULT_MAX_POINTS = 5000
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class Projection:
    """A 2-D map of (a sample of) the stored embeddings.

    Attributes:
        encoder_version: name of the encoder version the vectors belong to.
        method: ``"pca"`` or ``"umap"``.
        image_ids: ``(N,)`` int64 ids of the projected images.
        coords: ``(N, 2)`` float32 map coordinates, row-aligned with ``image_ids``.
        total: number of stored vectors of the encoder version when the projection was computed.
        explained_variance: PCA only: the fraction of variance explained by the two axes.
        seconds: how long the computation took (0 when loaded from the cache file).
        from_cache: whether it was loaded from the cache file.
    """

    encoder_version: str
    method: Method
    image_ids: np.ndarray
    coords: np.ndarray
    total: int
    explained_variance: tuple[float, float] | None
    seconds: float
    from_cache: bool

    @property
    def sampled(self) -> bool:
        """True when fewer points than stored vectors are shown."""
        return len(self.image_ids) < self.total


def project(vectors: np.ndarray, method: Method, seed: int = 0) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Project ``(N, D)`` vectors to ``(N, 2)``.

    Args:
        vectors: ``(N, D)`` float32 embeddings (L2-normalised).
        method: ``"pca"`` or ``"umap"``.
        seed: random seed (UMAP, randomized PCA).

    Returns:
        ``(coords (N, 2) float32, explained variance ratios of the two PCA axes or None)``.

    Raises:
        RetrievalError: unknown method or fewer than 3 vectors.
    """
    if method not in METHODS:
        raise RetrievalError(f"unknown projection method {method!r}: use one of {', '.join(METHODS)}")
    n = len(vectors)
    if n < 3:
        raise RetrievalError(f"a {method.upper()} map needs at least 3 stored vectors, found {n}: ingest more images")
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, dtype=np.float32)
    if method == "pca":
        pca = PCA(n_components=2, random_state=seed)
        coords = pca.fit_transform(x)
        ratio = pca.explained_variance_ratio_
        return coords.astype(np.float32), (float(ratio[0]), float(ratio[1]))
    import umap

    n_comp = min(50, n - 1, x.shape[1])
    reduced = PCA(n_components=n_comp, random_state=seed).fit_transform(x) if x.shape[1] > n_comp else x
    reducer = umap.UMAP(
        n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1
    )
    coords = reducer.fit_transform(reduced)
    return np.asarray(coords, dtype=np.float32), None


def _cache_path(home: Path, version: EncoderVersion, method: Method, max_points: int, seed: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in version.name)
    return Path(home) / "projections" / f"{safe}-{version.id}-{method}-n{max_points}-s{seed}.npz"


def stored_count(version: EncoderVersion, *, session: Session) -> int:
    """Number of images with a stored vector for ``version``."""
    return int(
        session.scalar(select(func.count()).select_from(Embedding).where(Embedding.encoder_version_id == version.id))
        or 0
    )


#: The sample is drawn in SQL with a seeded hash of the image id (one pass over the version's embedding rows inside
#: the database, returning only about ``max_points`` rows): h(id) = ((id * A + B_seed) mod P)^2 mod P. P < 2^31, so
#: every intermediate fits the 64-bit integers of SQLite and PostgreSQL (no overflow to floats, no int4 overflow:
#: the id is cast to BIGINT first). Squaring makes the selection irregular in the id (an affine map alone would pick
#: every k-th id); each seed gives another sample.
_HASH_P = 2_147_483_629  # a prime below 2^31
_HASH_A = 1_103_515_245
#: Rows asked for beyond ``max_points`` (about four standard deviations of the hash sample's size), so that one
#: query nearly always returns enough; a short answer is retried with a larger fraction.
_SLACK_SIGMAS = 4.0
#: Vectors read from the store per call (bounds the transient Python objects of a store answer).
READ_CHUNK = 1000


def _hash_bucket(seed: int) -> Any:
    """The SQL expression h(image_id) in [0, P) for ``seed`` (see ``_HASH_P``)."""
    offset = (int(seed) * 2_654_435_761 + 12_345) % _HASH_P
    h1 = (cast(Embedding.image_id, BigInteger) * _HASH_A + offset) % _HASH_P
    return (h1 * h1) % _HASH_P


def sample_image_ids(version: EncoderVersion, max_points: int, seed: int, *, session: Session) -> np.ndarray:
    """A seeded sample of at most ``max_points`` image ids with a stored vector of ``version``, sorted.

    Never reads every row: one ``COUNT``, then a hashed selection in SQL returning about ``max_points`` ids
    (retried with a larger fraction in the rare case it returns too few), subsampled to exactly ``max_points``
    with ``numpy.random.default_rng(seed)``. Memory is O(max_points) whatever the number of stored vectors.

    Args:
        version: encoder version whose stored vectors are sampled.
        max_points: sample size cap (all ids when fewer are stored).
        seed: sampling seed; the same seed and rows give the same sample.
        session: SQL session.

    Returns:
        ``(N,)`` int64 image ids, ascending, ``N = min(max_points, stored)``.

    Raises:
        EmptyCollectionError: no stored vectors for the version.
        RetrievalError: ``max_points`` below 1.
    """
    if max_points < 1:
        raise RetrievalError(f"max_points must be at least 1, got {max_points}")
    total = stored_count(version, session=session)
    if total == 0:
        raise EmptyCollectionError(
            f"encoder version {version.name!r} has no stored vectors: ingest images first (histoquery ingest <folder>)"
        )
    base = select(Embedding.image_id).where(Embedding.encoder_version_id == version.id)
    if total <= max_points:
        return np.sort(np.fromiter(session.scalars(base), dtype=np.int64))
    want = max_points + _SLACK_SIGMAS * np.sqrt(max_points) + 16
    bucket = _hash_bucket(seed)
    while True:
        fraction = min(1.0, want / total)
        cut = int(np.ceil(fraction * _HASH_P))
        ids = np.fromiter(session.scalars(base.where(bucket < cut)), dtype=np.int64)
        if len(ids) >= max_points or fraction >= 1.0:
            break
        logger.debug("hashed sample gave %d < %d ids at fraction %.4f: retrying larger", len(ids), max_points, fraction)
        want *= 1.5
    ids = np.sort(ids)
    if len(ids) > max_points:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=max_points, replace=False))
    return ids


def read_vectors(collection: str, image_ids: np.ndarray, dim: int, *, store: object) -> np.ndarray:
    """The stored vectors of ``image_ids`` as one ``(N, D)`` float32 matrix, read ``READ_CHUNK`` ids per
    ``store.vector_matrix`` call into a preallocated array (memory: N x D x 4 bytes plus one chunk).

    Raises:
        RetrievalError: the store lacks some of the ids (SQL and store out of step).
    """
    ids = np.asarray(image_ids, dtype=np.int64)
    out = np.empty((ids.size, dim), dtype=np.float32)
    for start in range(0, ids.size, READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        rows, found = store.vector_matrix(collection, chunk)  # type: ignore[attr-defined]
        if not bool(np.all(found)):
            missing = int(chunk[~np.asarray(found, dtype=bool)][0])
            raise RetrievalError(
                f"collection {collection!r} has no vector for image id {missing} although SQL records one: the SQL "
                "records and the vector store disagree; run `histoquery doctor` to find and repair the difference"
            )
        out[start : start + chunk.size] = rows
    return out


def sample_embeddings(
    version: EncoderVersion, max_points: int, seed: int, *, session: Session, store: object
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of at most ``max_points`` stored (image id, vector) pairs of ``version``: the ids from
    :func:`sample_image_ids`, the vectors of those ids only (:func:`read_vectors`).

    Returns:
        ``(image_ids (N,) int64, vectors (N, D) float32)``.
    """
    ids = sample_image_ids(version, max_points, seed, session=session)
    return ids, read_vectors(version.collection, ids, version.dim, store=store)


def _read_cache(path: Path, version: EncoderVersion, method: Method, total: int) -> Projection | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) == _CACHE_FORMAT and int(data["total"]) == total:
                ev = data["explained_variance"]
                return Projection(
                    encoder_version=version.name,
                    method=method,
                    image_ids=data["image_ids"].astype(np.int64),
                    coords=data["coords"].astype(np.float32),
                    total=total,
                    explained_variance=(float(ev[0]), float(ev[1])) if ev.size == 2 else None,
                    seconds=0.0,
                    from_cache=True,
                )
        logger.info("projection cache %s is stale (stored vectors changed): recomputing", path)
    except (OSError, KeyError, ValueError) as exc:
        logger.warning("ignoring unreadable projection cache %s: %s", path, exc)
    return None


def load_cached(
    version: EncoderVersion,
    method: Method,
    *,
    home: Path,
    session: Session,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> Projection | None:
    """The projection from its cache file when that is still valid (same number of stored vectors), else None:
    never computes (a view can show another projection while a slow one, UMAP, is computed in the background)."""
    total = stored_count(version, session=session)
    return _read_cache(_cache_path(home, version, method, max_points, seed), version, method, total)


def load_or_compute(
    version: EncoderVersion,
    method: Method,
    *,
    home: Path,
    session: Session,
    store: object,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
    recompute: bool = False,
) -> Projection:
    """The projection of ``version``'s stored vectors: from the on-disk cache when still valid, else computed.

    Args:
        version: the encoder version whose collection is projected.
        method: ``"pca"`` or ``"umap"``.
        home: ``settings.home``; the cache lives in ``home/projections``.
        session: SQL session (reads the Embedding records).
        store: the vector store (``vector_matrix(collection, image_ids)``; only the sampled ids are read).
        max_points: sample size cap.
        seed: sampling and projection seed.
        recompute: ignore a valid cache file.

    Raises:
        EmptyCollectionError: no stored vectors for the version.
        RetrievalError: bad method, too few vectors, SQL and store out of step.
    """
    if max_points < 3:
        raise RetrievalError(f"max_points must be at least 3, got {max_points}")
    total = stored_count(version, session=session)
    path = _cache_path(home, version, method, max_points, seed)
    if not recompute:
        cached = _read_cache(path, version, method, total)
        if cached is not None:
            return cached
    start = time.perf_counter()
    ids, vectors = sample_embeddings(version, max_points, seed, session=session, store=store)
    coords, explained = project(vectors, method, seed=seed)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(
        tmp,
        format=np.int64(_CACHE_FORMAT),
        total=np.int64(total),
        image_ids=ids,
        coords=coords,
        explained_variance=np.array(explained if explained else [], dtype=np.float64),
    )
    tmp.replace(path)  # atomic: a concurrent reader sees the old or the new file, never half of one
    logger.info("%s projection of %d/%d vectors of %s in %.1fs", method, len(ids), total, version.name, seconds)
    return Projection(version.name, method, ids, coords, total, explained, seconds, False)
