"""``histoquery dashboard`` gives Streamlit the app's real upload limit and the viewer toolbar (no Deploy button)."""

from __future__ import annotations

import tomllib

import pytest

from cli.dashboard import streamlit_command
from tests.support.dashboard_browser import ROOT


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_upload_cap_is_the_apps_limit_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted bug: Streamlit's default cap (200 MB) or a hard-coded number fails this test."""
    monkeypatch.setenv("HISTOQUERY_MAX_UPLOAD_MB", "13")
    assert option(streamlit_command(8501, "127.0.0.1", headless=True), "--server.maxUploadSize") == "13"
    assert option(streamlit_command(8501, "127.0.0.1", True, max_upload_mb=7), "--server.maxUploadSize") == "7"


def test_no_deploy_button_however_it_is_started() -> None:
    """Planted bug: dropping the viewer toolbar from the command line or from .streamlit/config.toml fails this."""
    assert option(streamlit_command(8501, "127.0.0.1", headless=True), "--client.toolbarMode") == "viewer"
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())  # `streamlit run` from the repo root
    assert config["client"]["toolbarMode"] == "viewer"
