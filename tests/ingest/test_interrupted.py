"""A job whose process died shows `interrupted`; `jobs --resume` stores exactly the missing images; `--cancel`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from ingest.jobs import CANCELLED
from ingest.service import job_status, list_jobs
from retrieval.settings import Settings
from tests.support.ingest_checks import stored
from tests.support.ingest_inputs import he_image

ROOT = Path(__file__).resolve().parents[2]
# Runs an embedded ingestion and dies abruptly (like kill -9) as soon as its first batch is recorded.
DIE_AFTER_FIRST_BATCH = """
import os, sys
from ingest.service import submit_ingest
from retrieval.settings import get_settings

def progress(status):
    if status.batches_done >= 1:
        os._exit(9)

group_from = sys.argv[2] if len(sys.argv) > 2 else None
submit_ingest([sys.argv[1]], settings=get_settings(), dataset="d", progress=progress, group_from=group_from)
"""


@pytest.fixture
def env(embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"HISTOQUERY_HOME": str(embedded_settings.home), "HISTOQUERY_INGEST_BATCH_SIZE": "16"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("HISTOQUERY_BROKER_URL", "HISTOQUERY_DATABASE_URL", "HISTOQUERY_ALLOWED_ROOTS"):
        monkeypatch.delenv(key, raising=False)
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _interrupted_job(env: dict[str, str], tmp_path: Path, n: int = 48, group_from: str | None = None) -> int:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n):
        he_image(64, i).save(data / f"patient{i % 4}_img_{i:02d}.png")
    extra = [group_from] if group_from else []
    proc = subprocess.run([sys.executable, "-c", DIE_AFTER_FIRST_BATCH, str(data), *extra], env=env, cwd=ROOT,
                          timeout=600, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 9, proc.stderr[-3000:]
    return list_jobs(settings=Settings())[0].id


def test_a_dead_owner_shows_interrupted_and_resume_stores_exactly_the_missing_images(
    env: dict[str, str], embedded_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = _interrupted_job(env, tmp_path)
    before = job_status(job_id, settings=embedded_settings)
    assert before.status == "interrupted" and 1 <= before.batches_done < 3, before
    assert main(["-q", "jobs"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == [str(job_id), "ingest", "interrupted"]

    assert main(["-q", "jobs", "--resume", str(job_id)]) == 0
    after = job_status(job_id, settings=embedded_settings)
    assert (after.status, after.done, after.failed, after.skipped, after.batches_done) == ("done", 48, 0, 0, 3)
    s = stored(embedded_settings, "d")
    assert s.images == s.done == s.embeddings == s.points == s.distinct_hashes == 48 and s.drift_free
    assert main(["-q", "jobs", "--resume", str(job_id)]) == 2  # done: nothing to resume, said clearly
    assert "cannot be resumed: it is done" in capsys.readouterr().err


def test_cancel_ends_an_interrupted_job_for_good(
    env: dict[str, str], embedded_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = _interrupted_job(env, tmp_path, n=40)
    assert main(["-q", "jobs", "--cancel", str(job_id)]) == 0
    status = job_status(job_id, settings=embedded_settings)
    assert status.status == "failed" and status.error == CANCELLED
    assert main(["-q", "jobs", "--resume", str(job_id)]) == 2
    assert main(["-q", "jobs", "--cancel", str(job_id)]) == 2
    assert "already failed" in capsys.readouterr().err


def test_a_resumed_job_keeps_its_group_rules(env: dict[str, str], embedded_settings: Settings, tmp_path: Path) -> None:
    """Images stored after ``jobs --resume`` get their group from the job's own ``--group-from`` rule.

    Planted bug: resume_job planning without the job's ``groups_csv`` / ``group_from`` (the bug fixed in 8086d58)
    leaves the resumed images without a group and fails this test.
    """
    from sqlalchemy import select

    from ingest.service import resume_job
    from retrieval.db import make_engine, session_factory
    from retrieval.models import Image

    job_id = _interrupted_job(env, tmp_path, group_from=r"(patient\d+)_")
    assert job_status(job_id, settings=embedded_settings).status == "interrupted"
    assert resume_job(job_id, settings=embedded_settings) >= 1
    assert job_status(job_id, settings=embedded_settings).done == 48
    engine = make_engine(embedded_settings.db_url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(select(Image.source_path, Image.group)).all()
    finally:
        engine.dispose()
    assert len(rows) == 48
    wrong = [(path, group) for path, group in rows if group != Path(path).name.split("_")[0]]
    assert wrong == []
