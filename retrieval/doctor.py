"""Consistency check between SQL and the vector store, per encoder version, with optional repair.

Drift kinds:
  * missing: an ``embeddings`` row whose point is not in the collection (the vector was lost). Repair deletes the
    row and marks the image ``pending`` so that the next ingest/re-embed run embeds it again (re-queued).
  * orphan: a point in the collection with no ``embeddings`` row (e.g. a crash between the upsert and the SQL
    commit). Repair deletes the point.
  * no collection: the version's collection does not exist. Repair creates it (its rows then count as missing).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from retrieval.catalog import ACTIVE_ALIAS
from retrieval.models import Embedding, EncoderVersion, Image, utcnow
from retrieval.store.base import VectorStore

log = logging.getLogger(__name__)


@dataclass
class VersionReport:
    """Drift of one encoder version."""

    version: str
    collection: str
    active: bool
    sql_count: int
    store_count: int
    collection_exists: bool
    missing_image_ids: list[int] = field(default_factory=list)
    orphan_point_ids: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return self.collection_exists and not self.missing_image_ids and not self.orphan_point_ids

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check(*, session: Session, store: VectorStore, repair: bool = False) -> list[VersionReport]:
    """Compare SQL and the vector store for every encoder version; repair the drift when ``repair``."""
    reports = []
    for version in session.scalars(select(EncoderVersion).order_by(EncoderVersion.id)).all():
        reports.append(_check_version(version, session=session, store=store, repair=repair))
    return reports


def _check_version(version: EncoderVersion, *, session: Session, store: VectorStore, repair: bool) -> VersionReport:
    stmt = select(Embedding.point_id, Embedding.image_id).where(Embedding.encoder_version_id == version.id)
    rows = {str(pid): int(iid) for pid, iid in session.execute(stmt).all()}
    exists = store.has_collection(version.collection)
    point_ids = set(store.list_ids(version.collection)) if exists else set()
    report = VersionReport(
        version=version.name,
        collection=version.collection,
        active=version.is_active,
        sql_count=len(rows),
        store_count=len(point_ids),
        collection_exists=exists,
        missing_image_ids=sorted(int(rows[p]) for p in rows.keys() - point_ids),
        orphan_point_ids=sorted(point_ids - rows.keys()),
    )
    if repair and not report.ok:
        _repair(version, report, session=session, store=store)
    return report


def _repair(version: EncoderVersion, report: VersionReport, *, session: Session, store: VectorStore) -> None:
    if not report.collection_exists:
        store.ensure_collection(version.collection, version.dim)
        if version.is_active:
            store.set_alias(ACTIVE_ALIAS, version.collection)
    if report.orphan_point_ids:
        store.delete(version.collection, report.orphan_point_ids)
        store.optimize(version.collection)
    missing = report.missing_image_ids
    for start in range(0, len(missing), 5000):
        chunk = missing[start : start + 5000]
        session.execute(
            delete(Embedding).where(Embedding.encoder_version_id == version.id, Embedding.image_id.in_(chunk))
        )
        if version.is_active:
            session.execute(
                update(Image)
                .where(Image.id.in_(chunk))
                .values(status="pending", error="vector missing from the store (doctor); re-embed", updated_at=utcnow())
            )
    session.commit()
    report.repaired = True
    log.warning(
        "doctor repaired %s: %d missing re-queued, %d orphans deleted",
        version.name,
        len(report.missing_image_ids),
        len(report.orphan_point_ids),
    )
