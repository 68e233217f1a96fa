from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.errors import ManifestError
from ingest.sources import classify, enumerate_sources, read_manifest
from tests.support.ingest_inputs import he_image


def test_folder_walk_with_class_labels(sample_dir: Path) -> None:
    found = enumerate_sources([sample_dir], labels_from_folders=True)
    assert len(found.items) == 64
    assert not found.failures
    labels = {item.label for item in found.items}
    assert labels == {p.name for p in sample_dir.iterdir() if p.is_dir()}
    assert all(item.kind == "image" for item in found.items)
    # deterministic order, no duplicates when a folder is given twice
    again = enumerate_sources([sample_dir, sample_dir / "01_TUMOR"])
    assert [i.path for i in again.items] == [i.path for i in found.items]
    assert all(i.label is None for i in again.items)


def test_slides_and_missing_paths(sample_slide: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_text("ignored")
    found = enumerate_sources([sample_slide, tmp_path / "missing", tmp_path])
    assert [(Path(i.path).name, i.kind) for i in found.items] == [("cmu_small_region.svs", "slide")]
    assert len(found.failures) == 1
    assert "missing" in found.failures[0].source and "does not exist" in found.failures[0].reason


def test_classify_large_plain_image_is_slide(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    he_image(64).save(small)
    assert classify(small) == "image"
    assert classify(tmp_path / "x.ndpi") == "slide"


def test_manifest_columns_and_extra_metadata(tmp_path: Path, sample_dir: Path) -> None:
    img = tmp_path / "imgs" / "a.png"
    img.parent.mkdir()
    shutil.copy(next((sample_dir / "01_TUMOR").glob("*.png")), img)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,slide,dataset,stain,patient\n"
        "imgs/a.png,TUMOR,S1,ds1,HE,p7\n"
        f"{img},,,,,\n"
        "imgs/b.png,STROMA\n"
        ",x,,,,\n"
    )
    parsed = read_manifest(manifest)
    assert len(parsed.items) == 2  # relative and absolute rows; enumerate_sources de-duplicates by path
    assert len(enumerate_sources([], manifest=manifest).items) == 1
    first = parsed.items[0]
    assert first.path == str(img)
    assert (first.label, first.slide, first.dataset) == ("TUMOR", "S1", "ds1")
    assert first.extra == {"stain": "HE", "patient": "p7"}
    reasons = [f.reason for f in parsed.failures]
    assert any("row 4: expected 6 fields, got 2" in r for r in reasons)
    assert any("row 5: empty 'path'" in r for r in reasons)
    assert all(str(manifest) in f.source for f in parsed.failures)


def test_manifest_missing_path_column(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\na.png,x\n")
    with pytest.raises(ManifestError, match="missing required column 'path'.*found columns: file, label"):
        read_manifest(manifest)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_manifest_empty(tmp_path: Path, content: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(ManifestError, match="empty manifest"):
        read_manifest(manifest)


def test_manifest_not_found(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        enumerate_sources([], manifest=tmp_path / "nope.csv")
