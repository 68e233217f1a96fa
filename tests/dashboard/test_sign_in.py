"""Who may see the slides: with HISTOQUERY_AUTH=oidc a session without a signed-in user sees only the sign-in page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP_TIMEOUT

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
OIDC = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "x" * 32,
    "client_id": "histoquery",
    "client_secret": "secret",
    "server_metadata_url": "https://login.example.org/.well-known/openid-configuration",
}


def _leaves(node: Any) -> list[Any]:
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        return [leaf for child in children.values() for leaf in _leaves(child)]
    return [node]


def _everything(at: AppTest) -> list[str]:
    """Type and text of every element rendered in the main area and the sidebar."""
    out = []
    for leaf in _leaves(at.main) + _leaves(at.sidebar):
        text = leaf.label if leaf.type == "button" else getattr(leaf, "value", "")
        out.append(f"{leaf.type}:{text}")
    return out


def test_without_a_signed_in_user_only_the_sign_in_page_is_shown(
    empty_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HISTOQUERY_AUTH", "oidc")
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    at.secrets["auth"] = OIDC
    at.run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert _everything(at) == [
        "title:HistoQuery",
        "markdown:Tissue images are patient data: sign in to continue.",
        "button:Sign in",
    ]


def test_sign_in_required_but_not_configured_fails_closed(empty_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTOQUERY_AUTH", "oidc")
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    at.run()
    assert len(_everything(at)) == 2 and "no sign-in provider is configured" in at.error[0].value


def test_the_embedded_default_stays_open(empty_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HISTOQUERY_AUTH", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert "Sign in" not in [b.label for b in at.button]
    assert any("No encoder version is registered yet" in str(e.value) for e in at.info)
