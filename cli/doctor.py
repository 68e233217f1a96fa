"""``histoquery doctor``: check SQL against the vector store per encoder version; ``--repair`` fixes the drift.

Missing vectors (an ``embeddings`` row whose point is gone) are re-embedded from the image pixels with the
version's encoder (or left re-queued as ``pending`` when the pixels cannot be read); orphan points (no SQL row)
are deleted. ``--migrate`` first creates / upgrades the database schema.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("doctor", help="check (and --repair) SQL vs vector-store consistency",
                              description=__doc__)  # fmt: skip
    p.add_argument("--repair", action="store_true", help="delete orphan points, re-embed missing vectors")
    p.add_argument("--migrate", action="store_true", help="create / upgrade the database schema first")
    p.add_argument("--no-reembed", action="store_true", help="with --repair: only re-queue missing vectors")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cli.tables import table
    from retrieval.db import current_revision, engine_for, head_revision, migrate, require_schema, session_factory
    from retrieval.doctor import check
    from retrieval.errors import MigrationError
    from retrieval.jsonable import dumps
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store

    settings = get_settings()
    if args.migrate:
        migrate(settings.db_url)
    rev, head = current_revision(settings.db_url), head_revision()
    if rev != head:
        raise MigrationError(
            f"database is at revision {rev}, the code expects {head}: run `histoquery doctor --migrate`"
        )
    engine = engine_for(settings.db_url)
    require_schema(engine)
    store = open_vector_store(settings)
    try:
        with session_factory(engine)() as session:
            reports = check(session=session, store=store, repair=args.repair)
            reembedded: dict[str, int] = {}
            if args.repair and not args.no_reembed:
                for rep in reports:
                    if rep.missing_image_ids:
                        reembedded[rep.version] = _reembed(rep.version, rep.missing_image_ids, session, store, settings)
    finally:
        store.close()
    ok = all(r.ok for r in reports)
    if args.json:
        print(dumps({"schema_revision": rev, "ok": ok, "versions": [r.as_dict() for r in reports],
                     "reembedded": reembedded}))  # fmt: skip
    else:
        print(f"schema revision {rev} (head {head})")
        if not reports:
            print("no encoder versions registered")
        rows = [[r.version + (" *" if r.active else ""), r.collection, r.sql_count, r.store_count,
                 len(r.missing_image_ids), len(r.orphan_point_ids), "ok" if r.ok else ("repaired" if r.repaired
                 else "DRIFT")] for r in reports]  # fmt: skip
        if rows:
            print(
                table(["version (* active)", "collection", "sql rows", "points", "missing", "orphans", "state"], rows)
            )
        for name, n in reembedded.items():
            print(f"{name}: re-embedded {n} missing vector(s)")
        if not ok and not args.repair:
            print("drift found: run `histoquery doctor --repair`")
    return 0 if ok or args.repair else 1


def _reembed(version_name: str, image_ids: list[int], session: Any, store: Any, settings: Any) -> int:
    """Embed the images whose vectors were lost again, from their pixels, and store them."""
    from sqlalchemy import select

    from ingest.errors import IngestError
    from ingest.stored import image_pixels
    from retrieval.catalog import active_encoder_version, store_embeddings
    from retrieval.models import Image
    from training.encoder import Encoder
    from training.errors import TrainingError

    version = active_encoder_version(session=session, name=version_name)
    try:
        encoder = Encoder.from_checkpoint(version.checkpoint_path, device=None if settings.device == "auto" else
                                          settings.device)  # fmt: skip
    except (TrainingError, OSError) as exc:
        log.warning("cannot load %s to re-embed (%s): the images stay re-queued", version.checkpoint_path, exc)
        return 0
    images = session.scalars(select(Image).where(Image.id.in_(image_ids)).order_by(Image.id)).all()
    done = 0
    for start in range(0, len(images), 64):
        batch, pixels = [], []
        for img in images[start : start + 64]:
            try:
                pixels.append(image_pixels(img, max_pixels=settings.max_image_pixels, roots=settings.allowed_roots))
                batch.append(img)
            except IngestError as exc:
                img.status, img.error = "failed", f"doctor could not re-read the pixels: {exc}"
        if batch:
            store_embeddings(batch, encoder.embed(pixels), version, session=session, store=store)
            done += len(batch)
        session.commit()
    store.optimize(version.collection)
    return done
