"""``histoquery query | evaluate | doctor`` end to end on real sample images, a real (untrained) encoder,
SQLite and the embedded Qdrant store under a temp HISTOQUERY_HOME."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cli.main import main

pytestmark = pytest.mark.slow

CLASSES = ("01_TUMOR", "02_STROMA", "04_LYMPHO", "07_ADIPOSE")


@dataclass
class Env:
    home: Path
    ids: list[int]
    files: list[Path]
    unstored: Path
    version: str
    dataset_id: int


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[Env]:
    from PIL import Image as PILImage

    from retrieval.catalog import get_or_create_dataset, register_encoder, store_embeddings
    from retrieval.db import make_engine, migrate, session_factory
    from retrieval.models import Image
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store
    from training.encoder import Encoder
    from training.testing import make_untrained_checkpoint

    home = tmp_path_factory.mktemp("hq-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("HISTOQUERY_HOME", str(home))
    settings = get_settings()
    migrate(settings.db_url)
    ckpt = make_untrained_checkpoint(home / "ck.pt")
    files = [f for c in CLASSES for f in sorted((sample_dir / c).iterdir())[:3]]
    unstored = sorted((sample_dir / "06_MUCOSA").iterdir())[0]
    engine = make_engine(settings.db_url)
    store = open_vector_store(settings)
    with session_factory(engine)() as session:
        version = register_encoder(ckpt, session=session, store=store, activate=True)
        ds = get_or_create_dataset("sample", session=session)
        rows = [
            Image(
                dataset_id=ds.id,
                content_hash=hashlib.sha256(f.read_bytes()).hexdigest(),
                source_path=str(f.resolve()),
                label=f.parent.name,
                group=f"patient{i}",
                width=150,
                height=150,
            )
            for i, f in enumerate(files)
        ]
        session.add_all(rows)
        session.commit()
        enc = Encoder.from_checkpoint(ckpt, device="cpu")
        vecs = enc.embed([PILImage.open(f).convert("RGB") for f in files])
        store_embeddings(rows, vecs, version, session=session, store=store)
        ids = [r.id for r in rows]
        name = version.name
        dataset_id = ds.id
    store.close()
    engine.dispose()
    yield Env(home, ids, files, unstored, name, dataset_id)
    mp.undo()


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_query_pair_ids_files_and_thresholds(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = str(env.ids[0]), str(env.ids[5])
    res = _json(capsys, ["query", "pair", a, b, "--json"])
    assert -1 <= res["cos"] <= 1 and res["d"] == pytest.approx(2 - 2 * res["cos"], abs=1e-6)
    assert res["encoder_version"] == env.version
    # a stored file is read from the store: identical to its id
    same = _json(capsys, ["query", "pair", str(env.files[0]), a, "--json"])
    assert same["cos"] == pytest.approx(1.0, abs=1e-5) and same["same"] is True
    # an unstored file is embedded on the fly
    new = _json(capsys, ["query", "pair", str(env.unstored), a, "--json"])
    assert -1 <= new["cos"] < 0.99999
    flip_lo = _json(capsys, ["query", "pair", a, b, "--threshold", str(res["cos"] - 1e-4), "--json"])
    flip_hi = _json(capsys, ["query", "pair", a, b, "--threshold-d", str(res["d"] - 1e-3), "--json"])
    assert flip_lo["same"] is True and flip_hi["same"] is False
    assert main(["query", "pair", a, b]) == 0
    assert "threshold from" in capsys.readouterr().out


def test_query_errors_are_one_line(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "pair", "987654", str(env.ids[0])]) == 2
    assert "unknown image id 987654" in capsys.readouterr().err
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    assert main(["query", "pair", str(bad), str(env.ids[0])]) == 2
    assert f"cannot read query image {bad}" in capsys.readouterr().err
    assert main(["query", "pair", "1", "2", "--threshold", "3"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_query_topk(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["query", "topk", str(env.ids[0]), "-k", "5", "--json"])
    assert len(out["results"]) == 5 and env.ids[0] not in [r["image_id"] for r in out["results"]]
    only = _json(capsys, ["query", "topk", str(env.unstored), "-k", "10", "--label", "02_STROMA", "--json"])
    assert [r["label"] for r in only["results"]] == ["02_STROMA"] * 3
    assert main(["query", "topk", str(env.ids[0]), "-k", "3", "--group-by-slide"]) == 0
    assert "rank" in capsys.readouterr().out


def test_query_topk_exclude_same_group_and_its_old_name(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """``--exclude-same-group`` drops the query's group (here: the query itself, its group's only image, even with
    ``--include-self``); the old ``--exclude-same-slide`` still works as a hidden alias of it, with a note.

    Planted bug: wiring the flag to nothing (``exclude_same_group=False``) fails this test.
    """
    q = str(env.ids[0])
    with_self = _json(capsys, ["query", "topk", q, "-k", "3", "--include-self", "--json"])
    assert with_self["results"][0]["image_id"] == env.ids[0]
    argv = ["query", "topk", q, "-k", "3", "--include-self", "--json"]
    new = _json(capsys, [*argv, "--exclude-same-group"])
    assert env.ids[0] not in [r["image_id"] for r in new["results"]] and len(new["results"]) == 3
    assert main([*argv, "--exclude-same-slide"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["results"] == new["results"]
    assert "--exclude-same-slide is now --exclude-same-group" in captured.err
    assert "--exclude-same-slide" not in _help(capsys, ["query", "topk", "--help"])


def _help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return capsys.readouterr().out


def test_query_pairs_csv(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "pairs.csv"
    src.write_text(f"image_a,image_b\n{env.ids[0]},{env.ids[1]}\n{env.ids[2]},123456\n{env.unstored},{env.ids[3]}\n")
    out = tmp_path / "decisions.csv"
    assert main(["query", "pairs", str(src), "-o", str(out)]) == 1  # one bad row: reported, others answered
    captured = capsys.readouterr()
    assert "2/3 pairs answered" in captured.out and "line 3" in captured.err
    rows = list(csv.DictReader(out.open()))
    assert [r["error"] == "" for r in rows] == [True, False, True]
    assert all(r["same"] in ("0", "1") for r in (rows[0], rows[2]))


def test_query_pairs_csv_of_stored_files_with_bad_rows_in_the_middle(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stored files (relative to the CSV, and absolute), ids, a missing file and an unknown id in the middle: each
    answered row equals `query pair` on the same two images, each bad row carries the per-pair message."""
    import os

    rel = [os.path.relpath(f, tmp_path) for f in env.files]
    missing = tmp_path / "gone.png"
    rows = [
        (rel[0], rel[4]),
        (str(env.files[1]), str(env.ids[7])),
        ("gone.png", rel[2]),
        (str(env.ids[3]), "424242"),
        (rel[5], rel[5]),
        (str(env.ids[8]), rel[9]),
    ]
    src = tmp_path / "pairs.csv"
    src.write_text("image_a,image_b\n" + "".join(f"{a},{b}\n" for a, b in rows))
    out = tmp_path / "decisions.csv"
    assert main(["query", "pairs", str(src), "-o", str(out), "--threshold", "0.9"]) == 1
    captured = capsys.readouterr()
    assert "4/6 pairs answered" in captured.out and "line 4" in captured.err and "line 5" in captured.err
    got = list(csv.DictReader(out.open()))
    assert [r["line"] for r in got] == ["2", "3", "4", "5", "6", "7"]
    assert got[2]["error"] == f"cannot read query image {missing}: file does not exist (check the path)"
    assert got[3]["error"] == "unknown image id 424242: no such image in the database"
    for (a, b), row in zip(rows, got, strict=True):
        if row["error"]:
            continue
        one = _json(capsys, ["query", "pair", str(tmp_path / a) if not a.isdigit() else a,
                             str(tmp_path / b) if not b.isdigit() else b, "--threshold", "0.9", "--json"])  # fmt: skip
        assert float(row["cos"]) == pytest.approx(one["cos"], abs=1e-5) and row["same"] == str(int(one["same"]))
    assert float(got[4]["cos"]) == pytest.approx(1.0, abs=1e-5)


def test_evaluate_split_group_then_refuses_in_sample(
    env: Env, tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_file = tmp_path / "split.json"
    assert main(["evaluate", "--labeled", "sample", "--split", "group", "--n-pairs", "20", "--seed", "3",
                 "--json-out", str(report_file)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert text.index("evaluate of encoder") < text.index("--- calibration side ---")
    assert "split by group (seed 3)" in text and "no group on both sides" in text
    ev = json.loads(report_file.read_text())
    cal = ev["calibration"]
    assert ev["kind"] == "evaluate" and cal["kind"] == "calibrate" and ev["in_sample"] is False
    assert ev["threshold_source"] == "calibrated" and ev["threshold_cos"] == pytest.approx(cal["threshold_cos"])
    assert ev["split"]["calibration_groups"] + ev["split"]["held_out_groups"] == len(env.ids)
    assert ev["seed"] == 4 and cal["seed"] == 3 and ev["group_disjoint"] and "topk" in ev
    assert np.isfinite(ev["roc_auc"])
    # the two sides share no image
    from sqlalchemy import select

    from retrieval.db import make_engine, session_factory
    from retrieval.models import LabeledPair, PairSet
    from retrieval.settings import get_settings

    engine = make_engine(get_settings().db_url)
    with session_factory(engine)() as session:
        sides = [
            {
                i
                for row in session.execute(
                    select(LabeledPair.image_a_id, LabeledPair.image_b_id).join(PairSet).where(PairSet.name == name)
                ).all()
                for i in row
            }  # fmt: skip
            for name in (cal["pair_set"], ev["pair_set"])
        ]
    engine.dispose()
    assert sides[0] and sides[1] and not sides[0] & sides[1]

    # evaluating on the images the threshold was calibrated on: refused, unless --in-sample (then said first)
    assert main(["evaluate", "--labeled", "sample", "--n-pairs", "20"]) == 2
    assert "refusing to evaluate" in capsys.readouterr().err
    assert main(["evaluate", "--labeled", "sample", "--n-pairs", "20", "--in-sample"]) == 0
    assert capsys.readouterr().out.startswith("IN-SAMPLE: ")


def test_evaluate_folder_calibration_refuses_the_same_folder(
    env: Env, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--labeled-folder", str(sample_dir), "--n-pairs", "60", "--calibrate"]) == 0
    text = capsys.readouterr().out
    assert "calibrate of encoder" in text and "majority-vote@5" in text and "WARNING: NO GROUPS" in text
    assert main(["evaluate", "--labeled-folder", str(sample_dir), "--n-pairs", "60"]) == 2
    assert "refusing to evaluate" in capsys.readouterr().err


def test_doctor_detects_and_repairs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    from retrieval.ids import point_id
    from retrieval.settings import get_settings
    from retrieval.store import open_vector_store

    assert main(["doctor"]) == 0
    assert "ok" in capsys.readouterr().out
    store = open_vector_store(get_settings())
    content_hash = hashlib.sha256(env.files[2].read_bytes()).hexdigest()
    collection = store.resolve("hq_active")
    store.delete(collection, [point_id(content_hash, env.version, env.dataset_id)])
    store.close()
    assert main(["doctor"]) == 1
    assert "DRIFT" in capsys.readouterr().out
    rep = _json(capsys, ["doctor", "--repair", "--json"])
    assert rep["reembedded"] == {env.version: 1}
    after = _json(capsys, ["doctor", "--json"])
    assert after["ok"] is True and after["versions"][0]["store_count"] == len(env.ids)


@pytest.mark.parametrize(
    ("argv", "old", "command"),
    [
        (["query", "topk", "12", "--exclude-same-slide"], "--exclude-same-slide", ["query", "topk"]),
        (["evaluate", "--labeled", "ds", "--never-same-slide"], "--never-same-slide", ["evaluate"]),
    ],
)
def test_renamed_flags_set_exclude_same_group_with_a_note(
    argv: list[str], old: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Both old spellings (``cli/flags.py``) set ``exclude_same_group`` and say the new name; neither is in --help.

    Planted bug: an alias that parses but sets another destination (the flag then ignored) fails this test."""
    from cli.main import build_parser

    args = build_parser().parse_args(argv)
    assert args.exclude_same_group is True
    assert f"{old} is now --exclude-same-group" in capsys.readouterr().err
    assert build_parser().parse_args(argv[:-1]).exclude_same_group is False
    assert old not in _help(capsys, [*command, "--help"])
