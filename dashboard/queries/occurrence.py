"""Where else: heat maps of a query tile's cosine on every stored slide (``retrieval.occurrence``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard.queries.cache import RESULT_TTL_S
from dashboard.services import services_by_key


@st.cache_data(ttl=RESULT_TTL_S, max_entries=16, show_spinner=False)
def stored_tiles(key: str, version: str, stored: int) -> Any:
    """Positions of every stored slide tile of ``version`` (``retrieval.occurrence.stored_tiles``; ``stored``, the
    version's vector count, invalidates this cache after an ingestion)."""
    from retrieval.catalog import active_encoder_version
    from retrieval.occurrence import stored_tiles as read_tiles

    with services_by_key(key).session() as session:
        return read_tiles(active_encoder_version(session=session, name=version), session=session)


@st.cache_data(ttl=RESULT_TTL_S, max_entries=64, show_spinner="Scoring every stored tile ...")
def occurrence(key: str, version: str, query_ids: tuple[int, ...], stored: int) -> Any:
    """Heat maps of the mean of the stored tiles ``query_ids`` on every stored slide, slides ranked by best match
    (``retrieval.occurrence.where_else``)."""
    from retrieval.catalog import active_encoder_version
    from retrieval.occurrence import where_else

    svc = services_by_key(key)
    tiles = stored_tiles(key, version, stored)
    with svc.session() as session:
        ver = active_encoder_version(session=session, name=version)
        return where_else(query_ids, ver, session=session, store=svc.store, tiles=tiles)
