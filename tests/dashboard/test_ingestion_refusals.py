"""The Ingestion page refuses a missing folder before any job exists, as the CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP_TIMEOUT
from tests.support.dashboard_index import SampleIndex

PAGE = Path(__file__).resolve().parents[2] / "dashboard" / "views" / "ingestion.py"


def test_a_missing_folder_is_refused_before_a_job_exists(
    index_env: SampleIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.service import list_jobs
    from retrieval.settings import get_settings

    root = tmp_path / "allowed"
    root.mkdir()
    monkeypatch.setenv("HISTOQUERY_ALLOWED_ROOTS", f'["{root}"]')
    jobs_before = len(list_jobs(settings=get_settings()))
    at = AppTest.from_file(str(PAGE), default_timeout=APP_TIMEOUT)
    at.run()
    at.text_input[0].set_value(str(root / "no-such-folder"))
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [f"`{root / 'no-such-folder'}` is not a folder under the allowed roots: "
                                           "check the path."]  # fmt: skip
    assert len(list_jobs(settings=get_settings())) == jobs_before  # no job was created
