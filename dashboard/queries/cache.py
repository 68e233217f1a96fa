"""How long the pages' cached results live (``st.cache_data(ttl=...)``); shared by the feature modules."""

from __future__ import annotations

#: Query results, thumbnails of results, scored pairs: ten minutes.
RESULT_TTL_S = 600
#: Filter choices and picker lists, which change as images are ingested: one minute.
CHOICES_TTL_S = 60
