"""benchmarks/quality.py runs end to end through the product's path on the shipped sample (a smoke run of the
quality benchmark, so that a change elsewhere cannot silently break the number BENCHMARKS.md is built on).

Planted: allowing only the data folder as a root (the manifest, written in the work folder, is then refused, which is
how #12's allowed roots broke this script unnoticed) makes the untrained method stop with an EvaluationError.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402


@pytest.mark.slow
def test_quality_benchmark_runs_the_product_path_on_the_sample(tmp_path: Path) -> None:
    data = ROOT / "samples" / "kather2016"
    groups = tmp_path / "groups.csv"  # the sample's patients span several labels: each image is its own group here
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file() and p.suffix != ".md")
    groups.write_text("path,group\n" + "".join(f"{f},g{i}\n" for i, f in enumerate(files)))
    out = tmp_path / "q.json"
    rc = quality.main([
        "--data", str(data), "--groups", str(groups),
        "--methods", "histogram,untrained", "--probe-images", "0", "--calib-pairs", "200", "--eval-pairs", "200",
        "--knn-queries", "16", "--work", str(tmp_path / "work"), "--json", str(out), "--device", "cpu",
    ])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {row["method"].split(" ")[0]: row for row in report["rows"]}
    assert set(rows) == {"colour", "untrained"}
    untrained = rows["untrained"]
    assert untrained["n_eval_pairs"] > 0 and 0.0 <= untrained["accuracy"] <= 1.0
    assert untrained["eval_size"] == 224  # cpu-crops embeds whole tiles, not its 64 px training crops
    meta = report["meta"]
    assert meta["side_a"] + meta["side_b"] == 64 and meta["groups_a"] > 0 and meta["groups_b"] > 0

    # an encoder trained elsewhere is evaluated as given, not rebuilt (--checkpoint, the cross-set check): the same
    # checkpoint on the same split gives the same numbers. Planted: --checkpoint rows skipped (the option's first
    # version) fails this.
    kept = shutil.copy(tmp_path / "work" / "untrained.pt", tmp_path / "twin.pt")
    out2 = tmp_path / "q2.json"
    rc = quality.main([
        "--data", str(data), "--groups", str(groups), "--methods", "untrained", "--checkpoint", f"untrained={kept}",
        "--probe-images", "0", "--calib-pairs", "200", "--eval-pairs", "200", "--knn-queries", "16",
        "--work", str(tmp_path / "work2"), "--json", str(out2), "--device", "cpu",
    ])  # fmt: skip
    assert rc == 0
    (given,) = json.loads(out2.read_text())["rows"]
    assert "from twin.pt" in given["method"] and not (tmp_path / "work2" / "untrained.pt").exists()
    assert (given["accuracy"], given["roc_auc"]) == (untrained["accuracy"], untrained["roc_auc"])


def test_probe_holds_one_image_per_group() -> None:
    """The per-epoch probe scores kNN leave-one-out over its own images, so two images of one source tile would
    find each other. Planted: ``one_per_group`` returning ``subsample(items, n, seed)`` fails (groups repeat)."""
    items = [quality.Item(Path(f"g{g}_{k}.png"), f"c{g % 3}", f"g{g}") for g in range(40) for k in range(6)]
    probe = quality.one_per_group(items, 30, seed=2)
    assert len(probe) == 30
    assert len({it.group for it in probe}) == 30
    assert probe == quality.one_per_group(items, 30, seed=2)
    assert len(quality.one_per_group(items, 100, seed=2)) == 40  # fewer groups than asked: one image each


@pytest.mark.slow
def test_select_best_on_validation_groups_never_scores_them(tmp_path: Path) -> None:
    """``--select-best val`` chooses the epoch on a share of side B's groups and scores every row on the rest:
    the kept epoch is reported beside the last, and no probe image is among the images ingested for scoring.
    Planted bug: drawing the probe from side B without setting the validation groups aside (the default curve's
    probe) puts probe images among the scored ones."""
    import hashlib

    data = ROOT / "samples" / "kather2016"
    groups = tmp_path / "groups.csv"
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file() and p.suffix != ".md")
    groups.write_text("path,group\n" + "".join(f"{f},g{i}\n" for i, f in enumerate(files)))
    out, work = tmp_path / "q.json", tmp_path / "work"
    rc = quality.main([
        "--data", str(data), "--groups", str(groups), "--methods", "ours", "--select-best", "val",
        "--probe-images", "16", "--epochs", "2", "--set", "batch_size=8", "--set", "center_samples=16",
        "--set", "probe_pairs=40", "--calib-pairs", "100", "--eval-pairs", "100", "--knn-queries", "8",
        "--work", str(work), "--json", str(out), "--device", "cpu",
    ])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    last, best = report["rows"]
    assert best["method"].startswith("ours, epoch ") and "best val probe AUC" in best["method"]
    assert last["best_epoch"] in (1, 2) and last["probe_side"].startswith("B (validation")
    meta = report["meta"]
    assert meta["validation"] > 0 and meta["side_a"] + meta["side_b"] + meta["validation"] == 64

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    probed = {digest(p) for p in (work / "probe").rglob("*") if p.is_file()}
    scored = {digest(Path(row["path"])) for row in csv.DictReader((work / "manifest.csv").open())}
    assert probed and scored and not probed & scored


@pytest.mark.parametrize("share", ["0", "1", "1.5", "-0.2"])
def test_val_fraction_outside_zero_one_is_refused_before_any_work(tmp_path: Path, share: str) -> None:
    """A validation share of 0 or 1 would leave no groups to choose the epoch on, or none to score: a one-line error
    before anything is read. Planted: no range check (the first version) lets the run go on to read the data, where
    this call stops on the missing group CSV instead (a different message: shown failing); given groups, the share
    would be clamped silently by ``split_by_group``."""
    with pytest.raises(SystemExit, match="--val-fraction"):
        quality.main([
            "--data", str(ROOT / "samples" / "kather2016"), "--methods", "ours", "--select-best", "val",
            "--probe-images", "8", "--val-fraction", share, "--work", str(tmp_path / "work"),
        ])  # fmt: skip
    assert not (tmp_path / "work").exists()


def test_quality_repr_tta_averages_over_all_eight_dihedral_views() -> None:
    """``quality_repr.py --tta`` averages a read-out over the 8 dihedral views, so the average is the same for an
    image and for its rotated or mirrored copy. Planted bugs: the 4 rotations only (a mirrored copy averages to
    something else), or a view repeated (fewer than 8 distinct views)."""
    import quality_repr
    import torch

    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    views = quality_repr.dihedral(x)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8

    def avg(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([v[:, :, :2, :3].flatten(1) for v in quality_repr.dihedral(t)]).mean(0)

    for copy in (x.flip(3), x.flip(2), torch.rot90(x, 1, (2, 3)), torch.rot90(x.flip(3), 3, (2, 3))):
        assert torch.allclose(avg(copy), avg(x))
