"""Where an image's group comes from at ingestion: a manifest column, a groups CSV, a regex on file names, the
slide (``retrieval.groups``); planned batches carry it to the pipeline, which stores it in ``images.group``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.planning import plan_ingest
from ingest.sources import read_manifest
from retrieval.db import make_engine, migrate, session_factory
from retrieval.groups import GroupError, GroupRules


def _plan(tmp_path: Path, paths: list[Path], **kwargs: object) -> dict[str, str | None]:
    url = f"sqlite:///{tmp_path / 'hq.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            plan = plan_ingest(paths, session=session, dataset_id=1, resolve_dataset=lambda _: 1, batch_size=100,
                               **kwargs)  # type: ignore[arg-type]  # fmt: skip
    finally:
        engine.dispose()
    return {Path(item["path"]).name: item["group"] for b in plan.batches for item in b["items"]}


def test_manifest_group_columns(tmp_path: Path, sample_dir: Path) -> None:
    files = sorted(sample_dir.glob("*/*"))[:4]
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,slide,patient,group\n"
        f"{files[0]},A,S1,P1,G1\n"  # group wins
        f"{files[1]},A,S1,P1,\n"  # then patient
        f"{files[2]},B,S2,,\n"  # then the slide of a patch (stored as extra slide_name before, never grouped)
        f"{files[3]},B,,,\n"  # none
    )
    items = read_manifest(manifest).items
    assert [i.group for i in items] == ["G1", "P1", "S2", None]
    assert _plan(tmp_path, [], manifest=manifest) == {
        files[0].name: "G1", files[1].name: "P1", files[2].name: "S2", files[3].name: None
    }  # fmt: skip


def test_group_from_regex_and_groups_csv(tmp_path: Path, sample_dir: Path) -> None:
    folder = sample_dir / "01_TUMOR"
    files = sorted(folder.iterdir())
    groups_csv = tmp_path / "groups.csv"
    groups_csv.write_text(f"path,group\n{files[0].name},from-csv\n")
    rules = GroupRules.build(groups_csv=groups_csv, group_from=r"(CRC-Prim-HE-\d+)")
    got = _plan(tmp_path, [folder], groups=rules)
    assert got[files[0].name] == "from-csv"  # the CSV wins over the regex
    for f in files[1:]:
        expected = f.name[f.name.index("CRC-Prim-HE-") :].split("_")[0] if "CRC-Prim-HE-" in f.name else None
        assert got[f.name] == expected
    assert any(v and v.startswith("CRC-Prim-HE-") for v in got.values())


def test_bad_group_rules_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GroupError, match="not a valid regular expression"):
        GroupRules.build(group_from="(unclosed")
    bad = tmp_path / "g.csv"
    bad.write_text("file,patient\na.png,P1\n")
    with pytest.raises(GroupError, match="needs the columns path,group"):
        GroupRules.build(groups_csv=bad)
    bad.write_text("path,group\na.png,\n")
    with pytest.raises(GroupError, match=r"g.csv:2: empty path or group"):
        GroupRules.build(groups_csv=bad)
