"""The page preamble's stored-vector counts (``dashboard.common.active_version_or_stop``), cached.

Counting every embedding row is O(N) (57 ms at 1M vectors on SQLite) and every page paid it on every rerun. The
counts are now cached under a cheap stamp (:func:`dashboard.data.stored_stamp`: newest version, largest stored
image id, job progress), so a rerun costs a few indexed lookups; a new version, newly stored images or a job's
progress change the stamp and the counts are taken again. The encoder versions themselves (names, which is active)
are read fresh on every rerun: a few rows.
"""

from __future__ import annotations

import streamlit as st

from dashboard import data
from dashboard.queries.cache import CHOICES_TTL_S
from dashboard.services import services_by_key


@st.cache_data(ttl=CHOICES_TTL_S, max_entries=8, show_spinner=False)
def stored_counts(key: str, stamp: tuple[int, ...]) -> dict[int, int]:
    """Stored vectors per encoder version id (:func:`dashboard.data.stored_counts`), taken again when ``stamp``
    changes and at the latest after ``CHOICES_TTL_S`` (writes the stamp does not see, e.g. ``doctor --repair``)."""
    with services_by_key(key).session() as session:
        return data.stored_counts(session=session)
