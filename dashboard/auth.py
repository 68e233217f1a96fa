"""Who may see the slides: the sign-in gate in front of every page.

``HISTOQUERY_AUTH=oidc`` (the default of the compose deployment) requires a signed-in user, with Streamlit's
built-in OpenID Connect sign-in (``st.login``), configured in the ``[auth]`` section of ``.streamlit/secrets.toml``
(docs/deploy.md). Until a user has signed in, the app renders the sign-in page and nothing else; when sign-in is
required but no provider is configured, it renders an error and nothing else (it fails closed).
``HISTOQUERY_AUTH=none`` (the embedded default, the demo on localhost) leaves the app open.
"""

from __future__ import annotations

import logging

import streamlit as st

logger = logging.getLogger(__name__)


def _provider_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no or unreadable secrets file: not configured
        logger.warning("sign-in required but .streamlit/secrets.toml cannot be read")
        return False


def signed_in(mode: str) -> bool:
    """Whether this session may see the app; when not, the sign-in (or misconfiguration) page was rendered.

    Args:
        mode: ``Settings.auth``: ``"none"`` (open) or ``"oidc"`` (Streamlit OIDC sign-in required).
    """
    if mode == "none":
        return True
    if not _provider_configured():
        st.title("HistoQuery")
        st.error(
            "Sign-in is required (HISTOQUERY_AUTH=oidc) but no sign-in provider is configured: add an [auth] "
            "section to .streamlit/secrets.toml (see docs/deploy.md), or set HISTOQUERY_AUTH=none on a "
            "private machine."
        )
        return False
    if st.user.get("is_logged_in", False):  # absent when no identity cookie exists: not signed in
        with st.sidebar:
            st.caption(f"Signed in as {st.user.get('email') or st.user.get('name') or 'user'}")
            st.button("Sign out", on_click=st.logout)
        return True
    st.title("HistoQuery")
    st.write("Tissue images are patient data: sign in to continue.")
    st.button("Sign in", on_click=st.login, type="primary")
    return False
