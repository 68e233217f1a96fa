"""2-D projections (PCA, UMAP) of the stored embeddings of one encoder version, cached on disk.

The dashboard's cluster map shows these. Large collections are sampled (a seeded uniform sample of the stored
images), and a projection is computed once per (encoder version, method, sample size, seed) and kept under
``<settings.home>/projections/``. The cache is reused as long as the number of stored vectors of that encoder version
is unchanged; ingesting more images (or re-embedding) makes the next request recompute it.

PCA is what the study plotted; UMAP is run on the top 50 principal components (``n_neighbors=15``, cosine metric),
which keeps it fast on 2 CPU cores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from sqlalchemy import func, select
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


def sample_embeddings(
    version: EncoderVersion, max_points: int, seed: int, *, session: Session, store: object
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded uniform sample of at most ``max_points`` stored (image id, vector) pairs of ``version``.

    Returns:
        ``(image_ids (N,) int64, vectors (N, D) float32)``.
    """
    rows = session.execute(
        select(Embedding.image_id, Embedding.point_id)
        .where(Embedding.encoder_version_id == version.id)
        .order_by(Embedding.image_id)
    ).all()
    if not rows:
        raise EmptyCollectionError(
            f"encoder version {version.name!r} has no stored vectors: ingest images first (histoquery ingest <folder>)"
        )
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    points = [r[1] for r in rows]
    if len(rows) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_points, replace=False))
        ids = ids[pick]
        points = [points[i] for i in pick]
    vectors = np.asarray(store.retrieve(version.collection, points), dtype=np.float32)  # type: ignore[attr-defined]
    if vectors.shape[0] != len(ids):
        raise RetrievalError(
            f"collection {version.collection!r} returned {vectors.shape[0]} of {len(ids)} vectors: the SQL records and "
            "the vector store disagree; run `histoquery doctor` to find and repair the difference"
        )
    return ids, vectors


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
        store: the vector store (``retrieve(collection, point_ids)``).
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
