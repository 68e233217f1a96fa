"""User input is checked up front, in one place: version / dataset names, label length, pairs CSV fields, output
paths, and text printed to a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from cli.tables import table
from ingest.sources import read_manifest
from retrieval.catalog import get_or_create_dataset, register_encoder_version
from retrieval.errors import PairsFileError, RetrievalError
from retrieval.pairs_io import read_pairs_csv, write_decisions_csv
from tests.support.retrieval_factory import Catalog


def _register(cat: Catalog, name: str, sha: str) -> None:
    register_encoder_version(session=cat.session, store=cat.store, name=name, checkpoint_path="/x.pt",
                             checkpoint_sha256=sha, backbone="resnet18", representation="backbone", dim=16,
                             image_size=64)  # fmt: skip


def test_version_names_are_validated_before_anything_is_written(catalog: Catalog) -> None:
    _register(catalog, "v_1", "a" * 64)
    with pytest.raises(RetrievalError, match="'v/1' is not allowed"):  # not an IntegrityError on hq_v_1
        _register(catalog, "v/1", "b" * 64)
    with pytest.raises(RetrievalError, match="not allowed"):
        _register(catalog, "x" * 191, "c" * 64)
    with pytest.raises(RetrievalError, match="too long"):
        get_or_create_dataset("d" * 201, session=catalog.session)


def test_label_length_is_checked_in_one_place_for_every_database(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\na.png,{'L' * 201}\nb.png,{'L' * 200}\n")
    parsed = read_manifest(manifest)
    assert [Path(i.path).name for i in parsed.items] == ["b.png"]
    assert len(parsed.failures) == 1 and "at most 200" in parsed.failures[0].reason


def test_pairs_rows_with_extra_fields_are_rejected(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("image_a,image_b,same\n1,2,1\n3,4,0,extra\n")
    pairs = read_pairs_csv(csv)
    assert [r.line for r in pairs.rows] == [2]
    assert [e.line for e in pairs.errors] == [3] and "4 fields but the header has 3" in pairs.errors[0].message


def test_a_folder_as_decisions_output_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("image_a,image_b\n1,2\n")
    with pytest.raises(PairsFileError, match="is a folder"):
        write_decisions_csv(tmp_path, read_pairs_csv(csv), [])
    assert main(["-q", "query", "pairs", str(csv), "-o", str(tmp_path)]) == 2
    assert "is a folder: give a file name" in capsys.readouterr().err


def test_text_from_users_files_cannot_drive_the_terminal() -> None:
    out = table(["label"], [["\x1b[2J\x1b[31mTUMOR\x9b"]])
    assert "\x1b" not in out and "\x9b" not in out and "\\x1b[2J\\x1b[31mTUMOR\\x9b" in out
