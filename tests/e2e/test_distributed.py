"""The scaled-out path on one machine, through the real CLI only.

Throwaway PostgreSQL (metadata) and Redis (Celery broker), two `histoquery worker` subprocesses, then
`histoquery ingest --wait` on the shipped sample and slide, `histoquery query`,
`histoquery evaluate`, `histoquery doctor`, and the dashboard loaded in headless Chromium against that deployment.
No Qdrant server can run here: the vectors live in the embedded engine under the deployment's home, shared by the
worker processes (each batch takes the store's writer lock), as `ingest.context` documents.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e_cluster import Deployment, deployment, fresh_database, server_env

pytestmark = pytest.mark.slow

N_SAMPLE = 64


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: object, sample_dir: Path, sample_slide: Path
) -> Iterator[tuple[Deployment, dict[str, str]]]:
    """Two workers on Redis + PostgreSQL; the sample and the slide ingested through them with `--wait`."""
    from tests.support.services import redis_server
    from training.testing import make_untrained_checkpoint

    home = tmp_path_factory.mktemp("cluster")
    db_url = fresh_database(postgres, f"hq_e2e_{uuid.uuid4().hex[:10]}")
    checkpoint = make_untrained_checkpoint(home / "encoder.pt", backbone="resnet18", image_size=64)
    with redis_server() as redis:
        env = server_env(home, db_url, redis.url, ingest_batch_size="16")
        with deployment(home, env) as dep:
            dep.run("reembed", "--checkpoint", str(checkpoint), "--name", "e2e-enc", "--wait")
            dep.start_worker("--concurrency", "1", name="worker1")
            dep.start_worker("--concurrency", "1", name="worker2")
            dep.wait_workers_ready()
            outputs = {
                "ingest_images": dep.run(
                    "ingest", str(sample_dir), "--labels-from-folders", "--dataset", "kather", "--wait"
                ).stdout,
                "ingest_slide": dep.run("ingest", str(sample_slide), "--dataset", "slides", "--wait").stdout,
            }
            dep.stop_workers()  # releases nothing of the store (batches close it); keeps CPU for the queries
            yield dep, outputs


def _job_line(text: str) -> tuple[int, int, int, int]:
    match = re.search(r"job \d+ done: (\d+) stored, (\d+) skipped \(already stored\), (\d+) failed, of (\d+)", text)
    assert match, text
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def test_ingest_through_two_workers(cluster: tuple[Deployment, dict[str, str]]) -> None:
    dep, out = cluster
    stored, skipped, failed, total = _job_line(out["ingest_images"])
    assert (stored, skipped, failed, total) == (N_SAMPLE, 0, 0, N_SAMPLE)
    tiles, _, tile_failures, tile_total = _job_line(out["ingest_slide"])
    assert tiles > 0 and tile_failures == 0 and tiles == tile_total
    # Both workers took batches (16 items per batch, prefetch 1).
    for log in dep.logs:
        assert re.search(r"succeeded in", log.read_text(errors="replace")), f"{log.name} ran no batch"


def test_query_topk_and_pair(cluster: tuple[Deployment, dict[str, str]], sample_dir: Path) -> None:
    dep, _ = cluster
    query = sorted((sample_dir / "01_TUMOR").iterdir())[0]
    hits = json.loads(dep.run("query", "topk", str(query), "-k", "5", "--include-self", "--json").stdout)
    rows = hits["results"]
    assert len(rows) == 5 and hits["encoder_version"] == "e2e-enc"
    assert Path(rows[0]["source_path"]).name == query.name and rows[0]["score"] == pytest.approx(1.0, abs=1e-3)
    other = sorted((sample_dir / "07_ADIPOSE").iterdir())[0]
    pair = json.loads(dep.run("query", "pair", str(query), str(other), "--json").stdout)
    assert pair["d"] == pytest.approx(2 - 2 * pair["cos"], abs=1e-4)
    assert isinstance(pair["same"], bool)


def _pairs_csv(path: Path, sample_dir: Path, first: int) -> Path:
    """Two same-class and two different-class pairs per class from images ``first .. first+3`` of each class."""
    classes = sorted(p for p in sample_dir.iterdir() if p.is_dir())
    files = {c.name: sorted(c.iterdir()) for c in classes}
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_a", "image_b", "same"])
        for i, c in enumerate(classes):
            same = files[c.name][first : first + 4]
            other = files[classes[(i + 1) % len(classes)].name][first : first + 4]
            writer.writerow([same[0], same[1], 1])
            writer.writerow([same[2], same[3], 1])
            writer.writerow([same[0], other[1], 0])
            writer.writerow([same[2], other[3], 0])
    return path


def test_evaluate_calibrate_then_evaluate_on_other_images(
    cluster: tuple[Deployment, dict[str, str]], sample_dir: Path, tmp_path: Path
) -> None:
    dep, _ = cluster
    calibration = _pairs_csv(tmp_path / "calibration.csv", sample_dir, first=0)
    held_out = _pairs_csv(tmp_path / "held_out.csv", sample_dir, first=4)  # no image in common with calibration
    out_json = tmp_path / "calibration.json"
    dep.run("evaluate", "--pairs", str(calibration), "--calibrate", "--json-out", str(out_json))
    cal = json.loads(out_json.read_text())
    assert cal["n_pairs"] == 32 and cal["threshold_cos"] == pytest.approx(cal["best_accuracy_threshold_cos"])

    # the calibration pairs again: refused (their accuracy is the best accuracy on them, not a result)
    refused = dep.run("evaluate", "--pairs", str(calibration), check=False)
    assert refused.returncode != 0 and "refusing to evaluate" in refused.stderr

    ev_json = tmp_path / "evaluation.json"
    dep.run("evaluate", "--pairs", str(held_out), "--json-out", str(ev_json))
    ev = json.loads(ev_json.read_text())
    assert ev["threshold_source"] == "calibrated" and ev["in_sample"] is False
    assert ev["threshold_cos"] == pytest.approx(cal["threshold_cos"])  # no re-tuning on the held-out pairs
    # the reported accuracy is the share of held-out pairs that `query pairs` decides right at that threshold
    decisions = tmp_path / "decisions.csv"
    dep.run("query", "pairs", str(held_out), "-o", str(decisions))
    rows = list(csv.DictReader(decisions.open()))
    truth = [row[2] for row in list(csv.reader(held_out.open()))[1:]]
    right = [r["same"] == t for r, t in zip(rows, truth, strict=True)]
    assert len(rows) == ev["n_pairs"] == 32
    assert ev["accuracy"] == pytest.approx(sum(right) / len(right))


def test_doctor_reports_no_drift(cluster: tuple[Deployment, dict[str, str]]) -> None:
    dep, _ = cluster
    proc = dep.run("doctor", "--json")
    doctor = json.loads(proc.stdout)
    assert doctor["ok"], doctor
    (report,) = [r for r in doctor["versions"] if r["version"] == "e2e-enc"]
    assert report["sql_count"] == report["store_count"] > N_SAMPLE  # sample images + slide tiles, no drift
    assert not report["missing_image_ids"] and not report["orphan_point_ids"]


def test_dashboard_in_chromium(cluster: tuple[Deployment, dict[str, str]], tmp_path: Path) -> None:
    from tests.support.dashboard_browser import chromium, chromium_binary, streamlit_server

    if chromium_binary() is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    dep, out = cluster
    tiles = _job_line(out["ingest_slide"])[0]
    with streamlit_server(env=dep.env) as url, chromium() as browser:
        page = browser.new_page()
        page.navigate(url + "/models")
        page.wait_for_text("e2e-enc", timeout=120)  # the active encoder version, read from PostgreSQL
        page.screenshot(tmp_path / "models.png")
        assert not page.error_texts(), page.error_texts()
        page.navigate(url + "/ingestion")
        # The newest job (the slide's, run by the workers) with its counters, read from PostgreSQL.
        page.wait_for_text("Job details", f"{tiles} done, 0 failed, 0 skipped of {tiles}", timeout=120)
        page.screenshot(tmp_path / "ingestion.png")
        assert "Traceback" not in page.body_text()
        assert not page.error_texts(), page.error_texts()
