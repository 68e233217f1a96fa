"""Calibrate-then-evaluate, pairs CSV in/out with bad rows, and doctor drift repair."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select

from retrieval.api import Retrieval
from retrieval.doctor import check
from retrieval.errors import PairsFileError
from retrieval.evaluation import ScoredPairs, calibrate, evaluate, score_dataset, score_pairs_file
from retrieval.ids import point_id
from retrieval.models import Embedding, EvalRun, Image, LabeledPair
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
