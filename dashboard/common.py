"""Per-page preamble: open the shared services, find the active encoder, show empty states instead of errors."""

from __future__ import annotations

import streamlit as st

from dashboard import data, queries
from dashboard.services import Services, services
from dashboard.ui import shown_errors

EMPTY_NO_ENCODER = (
    "No encoder version is registered yet. Train one and register it "
    "(`histoquery train ...`), or run `histoquery demo` to build a small index from the shipped sample."
)
EMPTY_NO_VECTORS = (
    "The active encoder version **{name}** has no stored vectors yet. Ingest images on the **Ingestion** page or "
    "with `histoquery ingest <folder> --dataset <name>`."
)


def open_services() -> Services:
    """The shared services; stops the page with an error message when the database / store cannot be opened."""
    svc: Services | None = None
    with shown_errors("open the database and vector store"):
        svc = services()
    if svc is None:
        st.info("Check the HISTOQUERY_* settings (database URL, Qdrant path or URL) and reload the page.")
        st.stop()
    assert svc is not None
    return svc


def active_version_or_stop(svc: Services, need_vectors: bool = True) -> data.VersionInfo:
    """The active encoder version; shows a helpful empty state and stops the page when there is none to use."""
    with svc.session() as session:
        # the versions are read fresh (a few rows); their stored counts (O(N)) come cached under a cheap stamp
        counts = queries.stored_counts(svc.key, data.stored_stamp(session=session))
        listed = data.versions(session=session, counts=counts)
    active = next((v for v in listed if v.is_active), None)
    if active is None and svc.settings.active_encoder:
        active = next((v for v in listed if v.name == svc.settings.active_encoder), None)
    if active is None:
        st.info(EMPTY_NO_ENCODER)
        st.stop()
    assert active is not None
    if need_vectors and active.stored == 0:
        st.info(EMPTY_NO_VECTORS.format(name=active.name))
        st.stop()
    return active


def version_caption(version: data.VersionInfo) -> None:
    threshold = f"{version.threshold_cos:.3f}" if version.threshold_cos is not None else "not calibrated"
    st.caption(
        f"Encoder **{version.name}** ({version.backbone}, {version.representation}, {version.dim}-d) · "
        f"{version.stored:,} stored vectors · threshold cos {threshold}"
    )
