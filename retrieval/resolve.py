"""Turn queries (stored image ids, image files, PIL images, arrays) into vectors of one encoder version.

Stored ids and files already stored under the version are read from the vector store (no model run); everything
else is embedded on the fly with the version's encoder, all in batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from retrieval.errors import NotEmbeddedError, QueryImageError, RetrievalError, UnknownImageError, VectorStoreError
from retrieval.models import Embedding, EncoderVersion, Image
from retrieval.paths import PathError, legacy_path, normalise_path
from retrieval.store.base import VectorStore

if TYPE_CHECKING:
    from training.encoder import Encoder

QueryInput: TypeAlias = int | str | Path | PILImage.Image | np.ndarray


@dataclass
class Resolved:
    """Vectors for a list of queries; rows that failed are NaN and have an entry in ``errors``.

    Attributes:
        vectors: (N, D) float32, L2-normalised (NaN rows for failures).
        image_ids: stored image id per query (None for files / arrays not stored under the version).
        slide_ids: slide of the stored image (None otherwise).
        errors: query index -> the error that query raised.
    """

    vectors: np.ndarray
    image_ids: list[int | None]
    slide_ids: list[int | None]
    errors: dict[int, RetrievalError]

    def raise_first(self) -> None:
        """Raise the first error, if any."""
        if self.errors:
            raise self.errors[min(self.errors)]


def parse_query(text: str, base_dir: Path | None = None) -> int | Path:
    """A query as typed on the command line / in a CSV: digits are an image id, anything else a file path."""
    text = text.strip()
    if not text:
        raise QueryImageError("empty query: give an image id (digits) or an image file path")
    if text.isdigit():
        return int(text)
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path


def describe(query: QueryInput) -> str:
    """A short human name for a query (for tables and error messages)."""
    if type(query) is int:  # the common case of batches, first and cheap
        return f"id:{query}"
    if isinstance(query, int | np.integer):
        return f"id:{int(query)}"
    if isinstance(query, str | Path):
        return str(query)
    if isinstance(query, PILImage.Image):
        return f"<image {query.size[0]}x{query.size[1]}>"
    return f"<array {tuple(np.asarray(query).shape)}>"


def load_query_image(path: Path, max_pixels: int | None = None) -> PILImage.Image:
    """Decode a query image file with the one decoder (:func:`training.pixels.load_rgb`), as ingestion does.

    Raises:
        QueryImageError: naming the file and the reason (missing, not an image, over ``max_pixels``, ...).
    """
    from training.pixels import DEFAULT_MAX_PIXELS, PixelError, load_rgb

    try:
        return load_rgb(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    except PixelError as exc:
        raise QueryImageError(f"cannot read query image {path}: {exc.reason}") from exc


def stored_vectors(
    image_ids: Sequence[int], version: EncoderVersion, *, session: Session, store: VectorStore
) -> tuple[dict[int, np.ndarray], dict[int, int | None], dict[int, RetrievalError]]:
    """Vectors of stored images under ``version``: (vectors by id, slide by id, errors by id).

    The vectors come straight from the store by the indexed payload field ``image_id`` (one call, no SQL); only
    ids the store does not have are looked up in SQL, to say why (unknown image, not embedded, point lost).
    """
    unique = sorted({int(i) for i in image_ids})
    if not unique:
        return {}, {}, {}
    hits = store.vectors_by_image_ids(version.collection, unique)
    vectors = {i: vec for i, (vec, _) in hits.items()}
    slides: dict[int, int | None] = {i: payload.get("slide_id") for i, (_, payload) in hits.items()}
    errors = missing_image_errors([i for i in unique if i not in hits], version, session=session)
    return vectors, slides, errors


def missing_image_errors(
    image_ids: Sequence[int], version: EncoderVersion, *, session: Session
) -> dict[int, RetrievalError]:
    """Why the store has no vector for each of ``image_ids`` (unknown image, not embedded, point lost), in bulk."""
    missing = sorted({int(i) for i in image_ids})
    found: dict[int, str | None] = {}
    for start in range(0, len(missing), 5000):
        chunk = missing[start : start + 5000]
        stmt = (
            select(Image.id, Embedding.point_id)
            .outerjoin(Embedding, (Embedding.image_id == Image.id) & (Embedding.encoder_version_id == version.id))
            .where(Image.id.in_(chunk))
        )
        found.update({int(image_id): pid for image_id, pid in session.execute(stmt).all()})
    errors: dict[int, RetrievalError] = {}
    for i in missing:
        if i not in found:
            errors[i] = UnknownImageError(f"unknown image id {i}: no such image in the database")
        elif found[i] is None:
            errors[i] = NotEmbeddedError(
                f"image id {i} has no vector for encoder version {version.name!r}: ingest or re-embed it "
                "(`histoquery reembed`)"
            )
        else:
            errors[i] = VectorStoreError(
                f"image id {i} is recorded as embedded but its point is missing from collection "
                f"{version.collection!r}: run `histoquery doctor --repair`"
            )
    return errors


def query_path(query: str | Path) -> str:
    """The normalised form of a query file path, as compared with ``images.source_path`` (the one normaliser,
    :func:`retrieval.paths.normalise_path`: ``~`` expanded, absolute, symlinks and ``..`` resolved).

    Raises:
        PathError: the path contains a NUL byte.
    """
    return normalise_path(query)


def stored_ids_by_path(
    paths: Sequence[str | Path], version: EncoderVersion, *, session: Session, chunk: int = 2000
) -> list[int | None]:
    """Image ids of files already embedded under ``version`` (not slide tiles), in the order of ``paths``.

    An absolute path already in canonical form (no ``.``, ``..``, ``//`` or ``~``) is first looked up as written,
    with no file-system call; the others, and such paths not stored as written (a symlink, an older version's row),
    are normalised once (:func:`query_path`) and looked up with the others in indexed ``IN``
    queries on ``images.source_path`` (``chunk`` paths per query); the unresolved form older versions stored
    (:func:`retrieval.paths.legacy_path`) is looked up too.

    Returns:
        One image id per path, None for paths that are not stored under ``version``.
    """
    normal: dict[str | Path, str | None] = {}
    legacy: dict[str | Path, str] = {}
    as_given: list[str | Path] = []  # absolute paths already in canonical form: looked up as written first
    for p in dict.fromkeys(paths):
        text = os.fspath(p)
        if "\x00" not in text and os.path.isabs(text) and os.path.normpath(text) == text:
            normal[p] = text  # no '.', '..', '//' or '~' to resolve: a stored path is found without touching the disk
            as_given.append(p)
            continue
        _normalise_into(p, normal, legacy)
    by_path = _ids_by_source_path({v for v in normal.values() if v is not None} | set(legacy.values()), version,
                                  session=session, chunk=chunk)  # fmt: skip
    missed = [p for p in as_given if normal[p] not in by_path]
    for p in missed:  # not stored as written: through a symlink, or stored by an older version (legacy form)
        _normalise_into(p, normal, legacy)
    if missed:
        wanted = {v for v in (normal[p] for p in missed) if v is not None} | {legacy[p] for p in missed if p in legacy}
        by_path.update(_ids_by_source_path(wanted - set(by_path), version, session=session, chunk=chunk))
    return [None if normal[p] is None else by_path.get(normal[p] or "", by_path.get(legacy.get(p, ""))) for p in paths]


def _normalise_into(p: str | Path, normal: dict[str | Path, str | None], legacy: dict[str | Path, str]) -> None:
    try:
        normal[p], legacy[p] = query_path(p), legacy_path(p)
    except (OSError, ValueError):  # e.g. a NUL byte: not stored; resolve_queries reports it for that query
        normal[p] = None


def _ids_by_source_path(wanted: set[str], version: EncoderVersion, *, session: Session, chunk: int) -> dict[str, int]:
    """``images.source_path`` -> image id of files embedded under ``version`` among ``wanted`` (indexed IN queries)."""
    ordered = sorted(wanted)
    by_path: dict[str, int] = {}
    for start in range(0, len(ordered), chunk):
        stmt = (
            select(Image.source_path, Image.id)
            .join(Embedding, (Embedding.image_id == Image.id) & (Embedding.encoder_version_id == version.id))
            .where(Image.source_path.in_(ordered[start : start + chunk]), Image.slide_id.is_(None))
        )
        by_path.update({str(sp): int(iid) for sp, iid in session.execute(stmt)})
    return by_path


def resolve_queries(
    queries: Sequence[QueryInput],
    version: EncoderVersion,
    *,
    session: Session,
    store: VectorStore,
    encoder: Callable[[], Encoder],
    max_pixels: int | None = None,
    batch_size: int = 64,
) -> Resolved:
    """Vectors for ``queries`` in order, collecting per-query errors instead of stopping at the first."""
    n = len(queries)
    out = np.full((n, version.dim), np.nan, dtype=np.float32)
    image_ids: list[int | None] = [None] * n
    slide_ids: list[int | None] = [None] * n
    errors: dict[int, RetrievalError] = {}

    # Files that are stored images under this version are read from the store, not embedded again. Stored paths
    # are in the one canonical form (retrieval.paths); rows of older versions stored the unresolved form.
    path_at: list[int] = []
    for i, q in enumerate(queries):
        if isinstance(q, str | Path):
            try:
                normalise_path(q)
            except PathError as exc:
                errors[i] = QueryImageError(f"query {i}: {exc}")
            else:
                path_at.append(i)
    at = set(path_at)
    files = [q for i, q in enumerate(queries) if i in at and isinstance(q, str | Path)]
    stored = stored_ids_by_path(files, version, session=session) if files else []
    id_of: dict[int, int] = {i: iid for i, iid in zip(path_at, stored, strict=True) if iid is not None}
    for i, q in enumerate(queries):
        if isinstance(q, int | np.integer) and not isinstance(q, bool):
            id_of[i] = int(q)
    vecs, slides, id_errors = stored_vectors(list(id_of.values()), version, session=session, store=store)
    for i, image_id in id_of.items():
        if image_id in vecs:
            out[i] = vecs[image_id]
            image_ids[i] = image_id
            slide_ids[i] = slides.get(image_id)
        else:
            errors[i] = id_errors[image_id]

    # Everything else is pixels (or a ready vector) to embed.
    to_embed: list[tuple[int, PILImage.Image]] = []
    for i, q in enumerate(queries):
        if i in id_of or i in errors:
            continue
        try:
            item = _as_pixels_or_vector(q, i, _file_of(q), version.dim, max_pixels)
        except RetrievalError as exc:
            errors[i] = exc
            continue
        if isinstance(item, np.ndarray):
            out[i] = item
        else:
            to_embed.append((i, item))
    if to_embed:
        model = encoder()
        for start in range(0, len(to_embed), batch_size):
            chunk = to_embed[start : start + batch_size]
            vectors = model.embed([img for _, img in chunk], batch_size=batch_size)
            for (i, _), vec in zip(chunk, vectors, strict=True):
                out[i] = vec
    return Resolved(out, image_ids, slide_ids, errors)


def _file_of(query: Any) -> Path | None:
    """The normalised file path of a path query (None for other queries)."""
    if not isinstance(query, str | Path):
        return None
    try:
        return Path(query_path(query))
    except (OSError, ValueError) as exc:
        raise QueryImageError(f"query image {str(query)!r} is not a usable file path: {exc}") from exc


def _as_pixels_or_vector(
    q: Any, index: int, path: Path | None, dim: int, max_pixels: int | None
) -> PILImage.Image | np.ndarray:
    if path is not None:
        return load_query_image(path, max_pixels)
    if isinstance(q, PILImage.Image):
        from training.pixels import to_rgb

        return to_rgb(q)  # alpha on white, 16-bit scaled: as the decoder does for files
    if isinstance(q, np.ndarray):
        arr = np.asarray(q)
        if arr.ndim == 1:
            if arr.shape[0] != dim or not np.isfinite(arr).all():
                raise QueryImageError(f"query {index}: a 1-D array must be a finite {dim}-d vector, got {arr.shape}")
            norm = float(np.linalg.norm(arr))
            if norm == 0.0:
                raise QueryImageError(f"query {index}: the zero vector has no direction")
            return (arr / norm).astype(np.float32)
        if arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
            return PILImage.fromarray(np.ascontiguousarray(arr[:, :, :3]))
        if arr.ndim == 2 and arr.dtype == np.uint8:
            return PILImage.fromarray(arr).convert("RGB")
        raise QueryImageError(
            f"query {index}: arrays must be HxWx3 uint8 images or {dim}-d vectors, got {arr.dtype} {arr.shape}"
        )
    raise QueryImageError(f"query {index}: unsupported query type {type(q).__name__} (use an id, path, image, array)")
