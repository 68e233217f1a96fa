"""Calibrate-then-evaluate, pairs CSV in/out with bad rows, and doctor drift repair."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from retrieval.api import Retrieval
from retrieval.doctor import check
from retrieval.errors import EvaluationError, PairsFileError
from retrieval.evaluation import (
    ScoredPairs,
    calibrate,
    evaluate,
    pair_metrics,
    score_dataset,
    score_dataset_split,
    score_pairs_file,
)
from retrieval.ids import point_id
from retrieval.models import Embedding, EvalRun, Image, LabeledPair
from retrieval.pairgen import generate_pairs
from retrieval.pairs_io import answer_pairs, read_pairs_csv, write_decisions_csv
from tests.support.retrieval_factory import Catalog, populate

LABELS = [("TUMOR", "STROMA", "LYMPHO", "MUCOSA")[i % 4] for i in range(80)]


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_calibrate_then_evaluate_does_not_retune(catalog: Catalog) -> None:
    populate(catalog, LABELS, [i % 8 for i in range(80)])
    r = Retrieval(session=catalog.session, store=catalog.store)
    cal_set = score_dataset(r, "ds", n_pairs=200, seed=1, topk_queries=40)
    report = calibrate(r, cal_set)
    thr = catalog.version.threshold_cos
    assert thr is not None and report["threshold_cos"] == thr
    assert report["accuracy"] == report["best_accuracy"] > 0.9  # well separated clusters
    assert catalog.version.calibration and catalog.version.calibration["n_pairs"] == 200
    assert report["topk"]["precision_at_5"] > 0.9 and 0 <= report["topk"]["majority_vote_at_5"] <= 1

    # a deliberately shifted evaluation set: its own best threshold differs, the stored one must be used
    other = ScoredPairs(cal_set.scores - 0.3, cal_set.labels, "shifted")
    ev = evaluate(r, other)
    assert catalog.version.threshold_cos == thr
    assert ev["threshold_cos"] == thr and ev["threshold_source"] == "calibrated"
    assert ev["best_accuracy_threshold_cos"] != pytest.approx(thr)
    assert ev["accuracy"] < ev["best_accuracy"]
    lo, hi = ev["accuracy_ci95"]
    assert lo <= ev["accuracy"] <= hi
    kinds = catalog.session.scalars(select(EvalRun.kind).order_by(EvalRun.id)).all()
    assert kinds == ["calibrate", "evaluate"]
    assert catalog.session.scalar(select(func.count()).select_from(LabeledPair)) == 200


def test_score_dataset_without_topk_queries_gives_pair_metrics_only(catalog: Catalog) -> None:
    populate(catalog, LABELS[:20])
    r = Retrieval(session=catalog.session, store=catalog.store)
    scored = score_dataset(r, "ds", n_pairs=40, seed=0, topk_queries=0)
    assert len(scored.scores) == 40 and scored.labels.sum() == 20
    assert scored.topk == {}


def test_dataset_pairs_do_not_depend_on_ingestion_order(catalog: Catalog) -> None:
    """Two ingestions of the same files finish in different orders (parallel decoding), so their ids differ; the
    images pairs are drawn from are ordered by source path, so the same seed draws the same pairs. Planted bug:
    ordering by id (the first version; two runs of benchmarks/quality.py then calibrated different thresholds for
    identical weights) returns these images in reverse path order."""
    from retrieval.evaluation import _dataset_images

    rows, _ = populate(catalog, LABELS[:20])
    for i, row in enumerate(rows):  # the first-ingested image has the last path
        row.source_path = f"/data/{19 - i:02d}.png"
    catalog.session.commit()
    r = Retrieval(session=catalog.session, store=catalog.store)
    paths = [im.source_path for im in _dataset_images(r, "ds")]
    assert paths == sorted(paths) and len(paths) == 20


def test_pairs_csv_in_decisions_out_with_bad_rows(catalog: Catalog, tmp_path: Path) -> None:
    rows, vecs = populate(catalog, LABELS[:8])
    ids = [r.id for r in rows]
    src = _write(
        tmp_path / "pairs.csv",
        [
            ["image_a", "image_b", "same"],
            [str(ids[0]), str(ids[4]), "1"],
            [str(ids[0]), str(ids[1]), "0"],
            [str(ids[2]), "99999", "1"],  # unknown image
            [str(ids[2]), "", "1"],  # missing cell
            [str(ids[3]), str(ids[7]), "maybe"],  # bad label
            [str(ids[1]), "missing.png", "0"],  # file that does not exist
        ],
    )
    r = Retrieval(session=catalog.session, store=catalog.store)
    pf = read_pairs_csv(src)
    assert [e.line for e in pf.errors] == [5, 6] and len(pf.rows) == 4
    results = answer_pairs(r, pf, threshold_d=0.705)
    out = tmp_path / "decisions.csv"
    assert write_decisions_csv(out, pf, results) == 6
    table = list(csv.DictReader(out.open()))
    assert [t["line"] for t in table] == ["2", "3", "4", "5", "6", "7"]
    assert float(table[0]["cos"]) == pytest.approx(float(vecs[0] @ vecs[4]), abs=1e-5)
    assert table[0]["same"] == "1" and table[0]["error"] == ""
    assert "99999" in table[2]["error"] and "image_a and image_b" in table[3]["error"]
    assert "'same' must be 0 or 1" in table[4]["error"] and "does not exist" in table[5]["error"]

    scored = score_pairs_file(r, pf)
    assert len(scored.scores) == 2 and len(scored.skipped) == 4


def test_pairs_csv_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(PairsFileError, match=r"lacks column\(s\) image_b"):
        read_pairs_csv(_write(tmp_path / "p.csv", [["image_a", "x"], ["1", "2"]]))
    with pytest.raises(PairsFileError, match="same"):
        read_pairs_csv(_write(tmp_path / "q.csv", [["a", "b"], ["1", "2"]]), require_labels=True)
    with pytest.raises(PairsFileError, match="cannot read"):
        read_pairs_csv(tmp_path / "nope.csv")


def test_doctor_finds_and_repairs_drift(any_catalog: Catalog) -> None:
    cat = any_catalog
    rows, vecs = populate(cat, LABELS[:10])
    col = cat.version.collection
    assert all(rep.ok for rep in check(session=cat.session, store=cat.store))
    # drift: a lost vector and an orphan point
    lost = rows[3]
    cat.store.delete(col, [point_id(lost.content_hash, cat.version.name, lost.dataset_id)])
    orphan = point_id("never-in-sql", cat.version.name)
    cat.store.upsert(col, [orphan], vecs[:1], [{"image_id": -1}])

    (rep,) = check(session=cat.session, store=cat.store)
    assert not rep.ok and rep.missing_image_ids == [lost.id] and rep.orphan_point_ids == [orphan]
    assert (rep.sql_count, rep.store_count) == (10, 10)

    (rep,) = check(session=cat.session, store=cat.store, repair=True)
    assert rep.repaired
    cat.session.expire_all()
    assert cat.session.get(Image, lost.id).status == "pending"  # re-queued for embedding
    assert cat.session.scalar(select(func.count()).select_from(Embedding)) == 9
    (after,) = check(session=cat.session, store=cat.store)
    assert after.ok and after.sql_count == after.store_count == 9


PATIENTS = [f"P{i % 10}" for i in range(80)]  # 10 patients, each with images of all four labels


def _group_of(session: object, ids: set[int]) -> dict[int, str | None]:
    return {img.id: img.group for img in session.scalars(select(Image).where(Image.id.in_(ids)))}  # type: ignore[attr-defined]


def test_generated_pairs_are_group_disjoint_by_default(catalog: Catalog) -> None:
    populate(catalog, LABELS, groups=PATIENTS)
    r = Retrieval(session=catalog.session, store=catalog.store)
    scored = score_dataset(r, "ds", n_pairs=200, seed=0, topk_queries=20)
    assert scored.image_ids and len(scored.image_ids) == 200
    group = _group_of(catalog.session, {i for p in scored.image_ids for i in p})
    assert all(group[a] != group[b] for a, b in scored.image_ids)
    assert scored.info["groups"] == 10 and scored.info["group_disjoint"] is True and not scored.info["warnings"]
    report = pair_metrics(scored, 0.5)
    assert report["groups"] == 10 and report["seed"] == 0 and report["n_pairs_requested"] == 200
    # opting out is possible and said so
    loose = score_dataset(r, "ds", n_pairs=200, seed=0, exclude_same_group=False, topk_queries=0)
    assert loose.info["group_disjoint"] is False and "in-group" in loose.info["warnings"][0]


def test_manifest_slide_of_patches_groups_them(catalog: Catalog) -> None:
    """Patches whose only group is a manifest's slide column (stored as the group by ingest): never paired."""
    slides = [f"slide-{i % 5}" for i in range(80)]
    populate(catalog, LABELS, groups=slides)
    r = Retrieval(session=catalog.session, store=catalog.store)
    scored = score_dataset(r, "ds", n_pairs=100, seed=2, topk_queries=0)
    group = _group_of(catalog.session, {i for p in scored.image_ids or [] for i in p})
    assert scored.info["groups"] == 5 and all(group[a] != group[b] for a, b in scored.image_ids or [])


def test_no_groups_is_warned_loudly(catalog: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    populate(catalog, LABELS[:20])
    r = Retrieval(session=catalog.session, store=catalog.store)
    scored = score_dataset(r, "ds", n_pairs=20, seed=0, topk_queries=0)
    assert scored.info["groups"] == 0 and scored.info["warnings"][0].startswith("NO GROUPS")
    assert "NO GROUPS" in caplog.text
    with pytest.raises(EvaluationError, match="no groups to split by"):
        score_dataset_split(r, "ds", n_pairs=20)


def test_split_by_group_calibrates_and_evaluates_on_disjoint_groups(catalog: Catalog) -> None:
    populate(catalog, LABELS, groups=PATIENTS)
    r = Retrieval(session=catalog.session, store=catalog.store)
    cal, held = score_dataset_split(r, "ds", n_pairs=100, seed=5, topk_queries=10)
    ids = {i for p in (cal.image_ids or []) + (held.image_ids or []) for i in p}
    group = _group_of(catalog.session, ids)
    cal_groups = {group[i] for p in cal.image_ids or [] for i in p}
    held_groups = {group[i] for p in held.image_ids or [] for i in p}
    assert cal_groups and held_groups and not cal_groups & held_groups
    assert held.info["split"]["calibration_groups"] == 5 and held.info["split"]["held_out_groups"] == 5
    again, _ = score_dataset_split(r, "ds", n_pairs=100, seed=5, topk_queries=0)
    assert again.image_ids == cal.image_ids  # seeded
    calibrate(r, cal)
    ev = evaluate(r, held)
    assert ev["in_sample"] is False and ev["split"]["side"] == "held-out"
    # evaluating on the calibration images (or on other images of the calibration groups) is refused
    with pytest.raises(EvaluationError, match="refusing to evaluate"):
        evaluate(r, cal)
    whole = score_dataset(r, "ds", n_pairs=100, seed=9, topk_queries=0)
    with pytest.raises(EvaluationError, match="in-sample"):
        evaluate(r, whole)
    marked = evaluate(r, whole, in_sample=True)
    assert marked["in_sample"] and "images" in marked["in_sample"]


def test_shared_group_without_shared_images_is_refused(catalog: Catalog) -> None:
    populate(catalog, LABELS, groups=PATIENTS)
    r = Retrieval(session=catalog.session, store=catalog.store)
    rows = catalog.session.scalars(select(Image).order_by(Image.id)).all()
    first = [(rows[i].id, rows[j].id) for i, j in ((0, 10), (1, 11), (0, 11), (1, 10))]  # patients P0, P1
    second = [(rows[i].id, rows[j].id) for i, j in ((20, 30), (21, 31), (20, 31), (21, 30))]  # P0, P1 again
    labels = np.array([1, 1, 0, 0])  # the scores are made up: only which images and groups are used matters
    calibrate(r, ScoredPairs(np.array([0.9, 0.8, 0.2, 0.1]), labels, "hand-a", first))
    with pytest.raises(EvaluationError, match="groups evaluated here"):
        evaluate(r, ScoredPairs(np.array([0.9, 0.8, 0.2, 0.1]), labels, "hand-b", second))


def test_n_pairs_beyond_what_exists_is_cut_with_a_message(catalog: Catalog) -> None:
    populate(catalog, LABELS[:12], groups=[f"P{i % 3}" for i in range(12)])
    r = Retrieval(session=catalog.session, store=catalog.store)
    scored = score_dataset(r, "ds", n_pairs=1_000_000_000, seed=0, topk_queries=0)
    # 12 images, 4 labels x 3, each label's 3 images in 3 different patients: 12 same-label pairs possible
    assert len(scored.scores) == 24 and scored.labels.sum() == 12
    assert "asked for 1000000000 pairs" in scored.info["warnings"][0]
    assert len(set(scored.image_ids or [])) == 24


def test_pair_sampling_is_reproducible_whatever_order_the_database_returns(any_catalog: Catalog) -> None:
    """PostgreSQL returns updated rows in another physical order; the pairs must not change with it."""
    rows, _ = populate(any_catalog, LABELS[:40], groups=[f"P{i % 8}" for i in range(40)])
    r = Retrieval(session=any_catalog.session, store=any_catalog.store)
    before = score_dataset(r, "ds", n_pairs=60, seed=4, topk_queries=0)
    for row in rows[:20]:  # touch the first half: new row versions go to the end of the heap
        row.height = (row.height or 0) + 1
    any_catalog.session.commit()
    any_catalog.session.expire_all()
    after = score_dataset(r, "ds", n_pairs=60, seed=4, topk_queries=0)
    assert after.image_ids == before.image_ids and after.info["seed"] == 4
    ordered = sorted(rows, key=lambda row: (row.source_path, row.id))  # plain images: no tile position
    expected = generate_pairs([row.label for row in ordered], 60, groups=[row.group for row in ordered],
                              exclude_same_group=True, seed=4)  # fmt: skip
    assert after.image_ids == [(ordered[p.a].id, ordered[p.b].id) for p in expected]


def test_per_class_accuracy_counts_each_pair_once_per_class_it_involves() -> None:
    """A pair counts for each distinct label of its two images (once for a same-label pair); recall is over the
    same-label pairs. Planted bug: counting a same-label pair twice for its class fails this test."""
    from retrieval.evaluation import PER_CLASS_COLUMNS, ScoredPairs, per_class_accuracy

    scored = ScoredPairs(
        np.array([0.9, 0.2, 0.8, 0.7]),
        np.array([1, 1, 0, 0]),
        "t",
        [(1, 2), (1, 3), (1, 4), (2, 5)],
    )
    label_of = {1: "A", 2: "A", 3: "A", 4: "B", 5: None}
    rows = {r["class"]: r for r in per_class_accuracy(scored, 0.5, label_of)}
    assert all(tuple(r) == PER_CLASS_COLUMNS for r in rows.values())
    # A: pairs (1,2) right, (1,3) wrong, (1,4) wrong, (2,5) wrong; same-label pairs (1,2) right, (1,3) wrong
    assert rows["A"] == {"class": "A", "pairs": 4, "accuracy": 0.25, "same-class pairs": 2,
                         "recall on same-class pairs": 0.5}  # fmt: skip
    assert rows["B"]["pairs"] == 1 and rows["B"]["accuracy"] == 0.0
    assert np.isnan(rows["B"]["recall on same-class pairs"])


def test_decision_curve_spans_all_thresholds_in_ascending_order() -> None:
    from retrieval.evaluation import decision_curve

    rng = np.random.default_rng(0)
    scores, labels = rng.uniform(-1, 1, 200), rng.integers(0, 2, 200)
    curve = decision_curve(scores, labels, points=50)
    cos = [row["threshold_cos"] for row in curve]
    assert cos == sorted(cos) and cos[0] == -1.0 and cos[-1] > 1.0
    assert curve[0]["tpr"] == 1.0 and curve[-1]["tpr"] == 0.0
