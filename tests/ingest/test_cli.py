"""The CLI subcommands in-process (embedded mode): exit codes, failure listing, jobs table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli.main import main
from retrieval.settings import Settings
from tests.support.ingest_inputs import make_bad_inputs


@pytest.fixture
def env(embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HISTOQUERY_HOME", str(embedded_settings.home))
    monkeypatch.setenv("HISTOQUERY_INGEST_BATCH_SIZE", "16")
    monkeypatch.setenv("HISTOQUERY_MAX_IMAGE_PIXELS", "50000000")
    monkeypatch.delenv("HISTOQUERY_BROKER_URL", raising=False)
    monkeypatch.delenv("HISTOQUERY_DATABASE_URL", raising=False)
    return embedded_settings


def test_ingest_exit_codes_and_jobs(env: Settings, sample_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    data = tmp_path / "data"
    shutil.copytree(sample_dir / "04_LYMPHO", data / "04_LYMPHO")
    assert main(["-q", "ingest", str(data), "--dataset", "cli", "--labels-from-folders"]) == 0
    out = capsys.readouterr().out
    assert "job 1 done: 8 stored, 0 skipped (already stored), 0 failed, of 8" in out
    bad = make_bad_inputs(tmp_path / "bad")
    assert main(["-q", "ingest", str(data), str(tmp_path / "bad"), "--dataset", "cli"]) == 1
    captured = capsys.readouterr()
    assert f"0 stored, 8 skipped (already stored), {len(bad)} failed" in captured.out
    assert f"FAILED [read] {bad['zero_byte']}: zero-byte file (empty)" in captured.err
    assert main(["-q", "jobs"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[1].split()[:3] == ["2", "ingest", "done"]
    assert main(["-q", "jobs", "2", "--failures"]) == 0
    detail = capsys.readouterr().out
    assert detail.count("FAILED") == len(bad) and "batches 1/1" in detail


def test_missing_job_and_worker_without_broker(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "jobs", "99"]) == 2
    assert "job 99 does not exist" in capsys.readouterr().err
    assert main(["-q", "worker"]) == 2
    assert "no broker configured" in capsys.readouterr().err


def test_bad_manifest_is_a_clear_error(env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\nx.png,a\n")
    assert main(["-q", "ingest", "--manifest", str(manifest)]) == 2
    assert "missing required column 'path'" in capsys.readouterr().err
