"""A calibrated sample index with byte-identical copies, for the Search (copies) and Pair (confidence) tests.

The 64 shipped Kather images (``build_sample_index``, no slide), in 16 groups, plus a byte-identical copy of every
image in a second dataset ``kather-copies`` (same content hash, same vector); the threshold is calibrated on half the
groups with a stored pair set ``ks-calibration`` and evaluated on the other half, stored as ``ks-held-out``
(``evaluate --split group``). Built once per test process; the Search, Pair and Accuracy tests share it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from tests.support.dashboard_index import SampleIndex, build_sample_index

CALIBRATION_SET = "ks-calibration"
HELD_OUT_SET = "ks-held-out"
COPIES_DATASET = "kather-copies"
_BUILT: dict[Path, SampleIndex] = {}


def calibrated_index_with_copies(home: Path, sample_dir: Path) -> SampleIndex:
    """Build (once per ``home`` in this process) the calibrated index with copies; returns it."""
    if home in _BUILT:
        return _BUILT[home]
    from retrieval import catalog
    from retrieval.api import Retrieval
    from retrieval.db import make_engine, session_factory
    from retrieval.evaluation import calibrate, evaluate, score_dataset_split
    from retrieval.models import Image
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store

    index = build_sample_index(home, sample_dir, groups=16)  # four classes per patient, stored with the points
    settings = get_settings(home=home)
    engine = make_engine(settings.db_url)
    store = open_vector_store(settings)
    try:
        with session_factory(engine)() as session:
            rows = session.scalars(select(Image).order_by(Image.id)).all()
            version = catalog.active_encoder_version(session=session)
            found = store.vectors_by_image_ids(version.collection, [r.id for r in rows])
            copies_ds = catalog.get_or_create_dataset(COPIES_DATASET, session=session)
            copies = [
                Image(dataset_id=copies_ds.id, content_hash=r.content_hash, source_path=r.source_path,
                      width=r.width, height=r.height, label=r.label, group=r.group, status="pending")
                for r in rows
            ]  # fmt: skip
            session.add_all(copies)
            session.flush()
            catalog.store_embeddings(
                copies, np.stack([found[r.id][0] for r in rows]), version, session=session, store=store
            )
            for row, copy in zip(rows, copies, strict=True):
                index.image_ids[f"copy:{Path(row.source_path).name}"] = int(copy.id)
            r = Retrieval(session=session, store=store, version=version)
            cal, held = score_dataset_split(r, "kather-sample", n_pairs=200, seed=0, topk_queries=0)
            calibrate(r, cal, pair_set_name=CALIBRATION_SET)
            evaluate(r, held, pair_set_name=HELD_OUT_SET)
            index.pair_set = CALIBRATION_SET
    finally:
        store.close()
        engine.dispose()
    _BUILT[home] = index
    return index
