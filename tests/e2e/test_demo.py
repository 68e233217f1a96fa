"""The README's first command, end to end on the embedded default: `histoquery demo` with a reduced step count.

Runs the real console script twice in a temp home: the first run trains, ingests, calibrates and evaluates; the
second must reuse all of it. Asserts on the printed report and on the files left behind.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.support.e2e_cluster import Deployment

pytestmark = pytest.mark.slow

DEMO_ARGS = ("demo", "--no-dashboard", "--steps", "1", "--epochs", "1", "--pairs", "60")


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    home = tmp_path_factory.mktemp("demo-home")
    dep = Deployment(home=home, env={"HISTOQUERY_HOME": str(home), "HISTOQUERY_DEVICE": "cpu"})
    first = dep.run(*DEMO_ARGS, "--home", str(home), timeout=600).stdout
    second = dep.run(*DEMO_ARGS, "--home", str(home), timeout=600).stdout
    return home, first, second


def test_first_run_prints_every_step_and_a_report(demo_runs: tuple[Path, str, str], sample_dir: Path) -> None:
    _, first, _ = demo_runs
    for i, word in enumerate(("train", "register", "ingest", "calibrate", "evaluate", "untrained twin"), start=1):
        assert re.search(rf"\[{i}/6\] .*{word}", first), f"step {i} ({word}) not announced:\n{first}"
    assert "==== HistoQuery demo report ====" in first
    n_images = sum(1 for p in sample_dir.rglob("*") if p.is_file())
    match = re.search(r"ingested\s+: (\d+) images, (\d+) slide tiles, (\d+) failed", first)
    assert match, first
    assert int(match.group(1)) == n_images == 64
    assert int(match.group(2)) > 0  # the sample slide was tiled
    assert int(match.group(3)) == 0
    thr = re.search(r"threshold\s+: cos >= (-?[\d.]+) .* d = 2 - 2cos <= ([\d.]+)\); calibrated on (\d+) pairs", first)
    assert thr, first
    cos, d = float(thr.group(1)), float(thr.group(2))
    assert -1.0 <= cos <= 1.0 and d == pytest.approx(2 - 2 * cos, abs=1e-3)
    acc = re.search(r"accuracy\s+: ([\d.]+) on (\d+) held-out pairs", first)
    assert acc and 0.0 <= float(acc.group(1)) <= 1.0 and int(acc.group(2)) > 0, first
    assert "reused" not in first.split("==== HistoQuery demo report ====")[1]
    # the untrained twin on the same held-out pairs, and a verdict that agrees with the two numbers
    twin = re.search(r"untrained\s+: ([\d.]+)", first)
    assert twin, first
    gain = float(acc.group(1)) - float(twin.group(1))  # of the printed (rounded) accuracies
    verdict = "training helped" if gain > 0 else "training did NOT beat the untrained twin here"
    shown = re.search(rf"{verdict}: accuracy ([-+][\d.]+)", first)
    assert shown, first
    assert float(shown.group(1)) == pytest.approx(gain, abs=0.0011), first  # each side was rounded to 0.001


def test_second_run_reuses_everything(demo_runs: tuple[Path, str, str]) -> None:
    _, first, second = demo_runs
    reused = re.search(r"reused\s+: (.*)", second)
    assert reused, second
    assert {"train", "register", "ingest", "calibrate"} <= {s.strip() for s in reused.group(1).split(",")}
    stored = re.search(r"ingested\s+: (\d+) images, (\d+) slide tiles", first)
    assert stored, first
    assert f": 0 new, {int(stored.group(1)) + int(stored.group(2))} already stored" in second, second
    # Same threshold, no re-tuning on the second run.
    thr = [re.search(r"threshold\s+: cos >= (-?[\d.]+)", out) for out in (first, second)]
    assert thr[0] and thr[1] and thr[0].group(1) == thr[1].group(1)


def test_files_left_behind(demo_runs: tuple[Path, str, str]) -> None:
    home, _, _ = demo_runs
    for name in ("demo/encoder.pt", "demo/manifest.csv", "demo/report.json", "histoquery.db", "qdrant"):
        assert (home / name).exists(), f"{name} missing under {home}"
    report = json.loads((home / "demo" / "report.json").read_text())
    assert report["ingest"]["images"] == 64 and report["ingest"]["failed"] == 0
    assert report["ingest"]["calibration_images"] + report["ingest"]["evaluation_images"] == 64
    assert report["reused"]["train"] and report["reused"]["ingest"]
    assert set(report["timings_s"]) >= {"train", "ingest", "calibrate", "evaluate", "total"}
    with sqlite3.connect(home / "histoquery.db") as db:
        active = db.execute("SELECT id, name, threshold_cos FROM encoder_versions WHERE is_active").fetchall()
        twin = db.execute(
            "SELECT id, threshold_cos FROM encoder_versions WHERE name = 'demo-untrained-twin' AND NOT is_active"
        ).fetchall()
        images = db.execute("SELECT count(*) FROM images WHERE status = 'done'").fetchone()[0]
        per_version = dict(db.execute("SELECT encoder_version_id, count(*) FROM embeddings GROUP BY 1").fetchall())
        runs = dict(
            db.execute(
                "SELECT kind, count(*) FROM eval_runs WHERE encoder_version_id = ? GROUP BY kind", (active[0][0],)
            )
        )
        twin_runs = dict(
            db.execute("SELECT kind, count(*) FROM eval_runs WHERE encoder_version_id = ? GROUP BY kind", (twin[0][0],))
        )
        sides = [
            {g for (g,) in db.execute(
                'SELECT DISTINCT i."group" FROM images i JOIN datasets d ON d.id = i.dataset_id '
                'WHERE d.name = ? AND i."group" IS NOT NULL', (name,))}
            for name in ("demo-calibration", "demo-evaluation")
        ]  # fmt: skip
    assert len(active) == 1 and active[0][2] == pytest.approx(report["calibration"]["threshold_cos"])
    # the twin: every stored image embedded in its own collection, calibrated once, evaluated per run
    assert len(twin) == 1 and twin[0][1] is not None
    assert images == per_version[active[0][0]] == per_version[twin[0][0]]
    assert images == report["ingest"]["images"] + report["ingest"]["tiles"]
    assert runs.get("calibrate") == 1 and runs.get("evaluate", 0) >= 2  # calibrated once, evaluated per run
    assert twin_runs.get("calibrate") == 1 and twin_runs.get("evaluate", 0) >= 2
    # held out by group: no source image has tiles on both sides, and the evaluation is not in-sample
    assert sides[0] and sides[1] and not sides[0] & sides[1]
    assert report["evaluation"]["in_sample"] is False and report["evaluation"]["groups"] == len(sides[1])


def test_third_run_starts_the_dashboard_and_prints_its_url(demo_runs: tuple[Path, str, str]) -> None:
    """Without --no-dashboard the demo serves the dashboard on the same home; SIGTERM stops it and its child."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    from tests.support.e2e_cluster import ROOT, histoquery_argv
    from tests.support.services import free_port

    home, _, _ = demo_runs
    port = free_port()
    args = [a for a in DEMO_ARGS if a != "--no-dashboard"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HISTOQUERY_")}
    proc = subprocess.Popen(
        histoquery_argv(*args, "--home", str(home), "--port", str(port)),
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("dashboard: http://"):
                break
        assert lines and lines[-1].startswith(f"dashboard: http://localhost:{port}"), "".join(lines)
        assert "[7/7] start the dashboard" in "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    time.sleep(1)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the dashboard kept running after the demo stopped"
