"""Pair and top-k queries through retrieval.api on real SQLite + embedded Qdrant (and PostgreSQL for the core)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from retrieval.api import Retrieval, group_by_slide
from retrieval.errors import EmptyCollectionError, NotEmbeddedError, ThresholdError, UnknownImageError
from retrieval.models import Image
from retrieval.store.base import SearchFilter
from retrieval.thresholds import STUDY_THRESHOLD_D, cos_to_d, d_to_cos, resolve_threshold
from tests.support.retrieval_factory import Catalog, add_images, fake_version, populate

LABELS = [("TUMOR", "STROMA", "LYMPHO")[i % 3] for i in range(60)]
SLIDES = [i % 6 for i in range(60)]


@pytest.fixture
def loaded(catalog: Catalog) -> tuple[Catalog, Retrieval, list[int], np.ndarray]:
    rows, vecs = populate(catalog, LABELS, SLIDES)
    return catalog, Retrieval(session=catalog.session, store=catalog.store), [r.id for r in rows], vecs


def test_pair_on_stored_ids(any_catalog: Catalog) -> None:
    rows, vecs = populate(any_catalog, LABELS[:6], SLIDES[:6])
    r = Retrieval(session=any_catalog.session, store=any_catalog.store)
    res = r.pair(rows[0].id, rows[1].id)
    expected = float(vecs[0] @ vecs[1])
    assert res.cos == pytest.approx(expected, abs=1e-5)
    assert res.d == pytest.approx(2 - 2 * expected, abs=1e-5)
    assert res.threshold_source == "study-default" and res.threshold_d == pytest.approx(STUDY_THRESHOLD_D)
    assert res.a == f"id:{rows[0].id}"


def test_decision_flips_at_threshold_in_both_conventions(
    loaded: tuple[Catalog, Retrieval, list[int], np.ndarray],
) -> None:
    _, r, ids, _ = loaded
    c = r.pair(ids[0], ids[1]).cos
    assert r.pair(ids[0], ids[1], threshold=c - 1e-4).same is True
    assert r.pair(ids[0], ids[1], threshold=c + 1e-4).same is False
    d = 2 - 2 * c
    assert r.pair(ids[0], ids[1], threshold_d=d + 2e-4).same is True
    assert r.pair(ids[0], ids[1], threshold_d=d - 2e-4).same is False
    res = r.pair(ids[0], ids[1], threshold_d=0.705)
    assert res.threshold_cos == pytest.approx(1 - 0.705 / 2) and res.threshold_source == "user"


def test_calibrated_threshold_is_used_and_user_wins(loaded: tuple[Catalog, Retrieval, list[int], np.ndarray]) -> None:
    cat, r, ids, _ = loaded
    cat.version.threshold_cos = 0.99
    res = r.pair(ids[0], ids[3])  # same label, but below 0.99
    assert res.threshold_source == "calibrated" and res.same is False
    assert r.pair(ids[0], ids[3], threshold=-1.0).same is True


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 1.5}, r"\[-1, 1\]"),
        ({"threshold_d": -0.1}, r"\[0, 4\]"),
        ({"threshold_d": 4.5}, r"\[0, 4\]"),
        ({"threshold": 0.5, "threshold_d": 0.7}, "one convention"),
        ({"threshold": float("nan")}, "out of range"),
    ],
)
def test_threshold_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ThresholdError, match=match):
        resolve_threshold(**kwargs)


def test_threshold_conventions_round_trip() -> None:
    assert cos_to_d(1.0) == 0.0 and cos_to_d(-1.0) == 4.0 and d_to_cos(0.705) == pytest.approx(0.6475)
    assert d_to_cos(cos_to_d(0.3)) == pytest.approx(0.3)


def test_pair_errors_name_the_image(loaded: tuple[Catalog, Retrieval, list[int], np.ndarray]) -> None:
    cat, r, ids, _ = loaded
    with pytest.raises(UnknownImageError, match="unknown image id 999999"):
        r.pair(ids[0], 999999)
    pending = add_images(cat.session, "ds", ["TUMOR"], prefix="pending")[0]
    with pytest.raises(NotEmbeddedError, match=f"image id {pending.id} has no vector"):
        r.pair(pending.id, ids[0])
    with pytest.raises(Exception, match="does not exist"):
        r.pair(ids[0], "/no/such/file.png")


def test_pair_batch_matches_single_and_reports_bad_rows(
    loaded: tuple[Catalog, Retrieval, list[int], np.ndarray],
) -> None:
    _, r, ids, vecs = loaded
    pairs = [(ids[i], ids[(i * 7 + 3) % 60]) for i in range(40)] + [(ids[0], 424242)]
    out = r.pair_batch(pairs, threshold=0.5)
    expected = [float(vecs[i] @ vecs[(i * 7 + 3) % 60]) for i in range(40)]
    np.testing.assert_allclose([o.cos for o in out[:40]], expected, atol=1e-5)
    assert [o.same for o in out[:40]] == [e >= 0.5 for e in expected]
    assert out[40].error is not None and "424242" in out[40].error and out[40].same is False
    assert r.pair_batch(pairs[:5]) == [r.pair(a, b) for a, b in pairs[:5]]


def test_pair_with_vector_array(loaded: tuple[Catalog, Retrieval, list[int], np.ndarray]) -> None:
    _, r, ids, vecs = loaded
    assert r.pair(ids[4], vecs[4] * 3.0).cos == pytest.approx(1.0, abs=1e-5)


def test_top_k_filters_and_exclusions(loaded: tuple[Catalog, Retrieval, list[int], np.ndarray]) -> None:
    _, r, ids, _ = loaded
    res = r.top_k(ids[0], k=10)
    assert len(res) == 10 and ids[0] not in [n.image_id for n in res]
    assert [n.rank for n in res] == list(range(1, 11))
    assert res[0].label == "TUMOR" and res[0].source_path is not None and res[0].dataset == "ds"
    assert all(a.score >= b.score for a, b in zip(res, res[1:], strict=False))
    with_self = r.top_k(ids[0], k=3, exclude_self=False)
    assert with_self[0].image_id == ids[0] and with_self[0].score == pytest.approx(1.0, abs=1e-5)

    only = r.top_k(ids[0], k=20, filter=SearchFilter(label="STROMA"))
    assert len(only) == 20 and {n.label for n in only} == {"STROMA"}
    cat = loaded[0]
    slide_of = {img.id: img.slide_id for img in cat.session.scalars(select(Image))}
    other_slide = slide_of[ids[1]]  # a real slide id (database key), not a slide number
    assert other_slide is not None and other_slide != slide_of[ids[0]]
    on_slide = r.top_k(ids[0], k=20, filter=SearchFilter(slide_id=other_slide))
    assert len(on_slide) == 10 and {n.slide_id for n in on_slide} == {other_slide}  # 60 tiles on 6 slides

    query_slide = slide_of[ids[0]]
    plain = r.top_k(ids[0], k=59)
    assert sum(n.slide_id == query_slide for n in plain) == 9  # the query's own slide is there without exclusion
    # these tiles have no group of their own: their group is their slide (retrieval.groups.image_group)
    other = r.top_k(ids[0], k=59, exclude_same_group=True)
    assert len(other) == 50 and all(n.slide_id != query_slide for n in other)
    groups = group_by_slide(plain)
    assert sum(len(v) for v in groups.values()) == len(plain)
    assert all([n.rank for n in g] == sorted(n.rank for n in g) for g in groups.values())


def test_top_k_excludes_the_query_group(catalog: Catalog) -> None:
    """Groups (patients) span slides: excluding the group removes more than the query's slide, also for points
    stored before the group field existed (no "group" in their payload)."""
    from retrieval.ids import point_id

    patients = [f"P{(i % 6) // 2}" for i in range(60)]  # slides 0+1 -> P0, 2+3 -> P1, 4+5 -> P2
    rows, vecs = populate(catalog, LABELS, SLIDES, groups=patients)
    r = Retrieval(session=catalog.session, store=catalog.store)
    ids = [row.id for row in rows]
    plain = r.top_k(ids[0], k=59)
    assert sum(n.group == "P0" for n in plain) == 19
    no_group = r.top_k(ids[0], k=59, exclude_same_group=True)
    assert len(no_group) == 40 and {n.group for n in no_group} == {"P1", "P2"}
    # an old point of patient P0 without "group" in its payload is still excluded (group read from SQL)
    old = rows[1]
    payload = {"image_id": old.id, "dataset": "ds", "label": old.label, "slide_id": old.slide_id}
    catalog.store.upsert(catalog.version.collection, [point_id(old.content_hash, catalog.version.name, old.dataset_id)],
                         vecs[1:2], [payload])  # fmt: skip
    again = r.top_k(ids[0], k=59, exclude_same_group=True)
    assert old.id not in {n.image_id for n in again} and {n.group for n in again} == {"P1", "P2"}


def test_old_keyword_exclude_same_slide_is_exclude_same_group_with_a_warning(
    loaded: tuple[Catalog, Retrieval, list[int], np.ndarray],
) -> None:
    """``exclude_same_slide`` (the old name) still works, as ``exclude_same_group``, and says it is deprecated.

    Planted bug: accepting the old keyword and ignoring it (same-slide tiles back) fails this test."""
    _, r, ids, _ = loaded
    new = r.top_k(ids[0], k=59, exclude_same_group=True)
    with pytest.warns(DeprecationWarning, match="exclude_same_group"):
        old = r.top_k(ids[0], k=59, exclude_same_slide=True)
    assert old == new and len(old) == 50
    with pytest.warns(DeprecationWarning):
        old_batch = r.top_k_batch(ids[:2], k=5, exclude_same_slide=True)
    assert old_batch == r.top_k_batch(ids[:2], k=5, exclude_same_group=True)


def test_top_k_batch_equals_singles(loaded: tuple[Catalog, Retrieval, list[int], np.ndarray]) -> None:
    _, r, ids, _ = loaded
    batch = r.top_k_batch(ids[:8], k=5, exclude_same_group=True)
    assert batch == [r.top_k(i, k=5, exclude_same_group=True) for i in ids[:8]]
    loose = r.top_k_batch([ids[0], 777777], k=5, strict=False)
    assert len(loose[0]) == 5 and loose[1] == []


def test_top_k_on_empty_collection(catalog: Catalog) -> None:
    v2 = fake_version(catalog.session, catalog.store, name="empty", dim=16)
    r = Retrieval(session=catalog.session, store=catalog.store, version=v2)
    with pytest.raises(EmptyCollectionError, match="empty"):
        r.top_k(np.ones(16, np.float32), k=3)
    with pytest.raises(Exception, match="1 to 1000"):
        r.top_k(np.ones(16, np.float32), k=0)


def test_top_k_metadata_from_sql_for_old_points(loaded: tuple[Catalog, Retrieval, list[int], np.ndarray]) -> None:
    """Points written without source path / tile fields in the payload get them from SQL."""
    from retrieval.ids import point_id
    from retrieval.models import Image

    cat, r, ids, vecs = loaded
    img = cat.session.get(Image, ids[5])
    assert img is not None
    payload = {"image_id": img.id, "dataset": "ds", "label": img.label, "slide_id": img.slide_id}
    pid = point_id(img.content_hash, cat.version.name, img.dataset_id)
    cat.store.upsert(cat.version.collection, [pid], vecs[5:6], [payload])
    (top,) = r.top_k(vecs[5], k=1)
    assert top.image_id == img.id and top.source_path == img.source_path and top.x == img.x


def test_query_through_a_replaced_checkpoint_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    """A file query embeds with the version's checkpoint: if the file was replaced since registration, the
    answer would be scored against vectors of another model. It is refused, as ingestion refuses it."""
    from PIL import Image as PILImage

    from retrieval.catalog import register_encoder
    from retrieval.errors import CheckpointChangedError
    from training.testing import make_untrained_checkpoint

    ckpt = make_untrained_checkpoint(tmp_path / "enc.pt", backbone="resnet18", image_size=32, seed=0)
    version = register_encoder(ckpt, session=catalog.session, store=catalog.store, name="real", activate=True)
    query = PILImage.new("RGB", (32, 32), (200, 120, 150))
    assert np.isfinite(Retrieval(session=catalog.session, store=catalog.store).vectors([query])).all()

    make_untrained_checkpoint(ckpt, backbone="resnet18", image_size=32, seed=1)  # replaced in place, same dim
    r = Retrieval(session=catalog.session, store=catalog.store, version=version)
    with pytest.raises(CheckpointChangedError, match="changed since its encoder version was registered"):
        r.vectors([query])
