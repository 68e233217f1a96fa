"""HistoQuery dashboard: the Streamlit entry point (``histoquery dashboard`` or ``streamlit run dashboard/app.py``).

Pages live in ``dashboard/views/``; each is a script that renders one page from ``retrieval`` / ``ingest`` calls.
Every page sits behind :func:`dashboard.auth.signed_in` (sign-in required when ``HISTOQUERY_AUTH=oidc``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import streamlit as st

logger = logging.getLogger("dashboard.app")

VIEWS = Path(__file__).resolve().parent / "views"

# (file, title, icon, url path)
PAGES = (
    ("search.py", "Search", ":material/search:", "search"),
    ("pair.py", "Pair", ":material/compare:", "pair"),
    ("clusters.py", "Clusters", ":material/scatter_plot:", "clusters"),
    ("occurrence.py", "Where else", ":material/grid_on:", "where-else"),
    ("accuracy.py", "Accuracy", ":material/query_stats:", "accuracy"),
    ("ingestion.py", "Ingestion", ":material/upload_file:", "ingestion"),
    ("models.py", "Models", ":material/model_training:", "models"),
)


def main() -> None:
    st.set_page_config(page_title="HistoQuery", page_icon=":material/biotech:", layout="wide")
    from dashboard.auth import signed_in
    from retrieval.settings import get_settings

    if not signed_in(get_settings().auth):
        st.stop()  # no page, no navigation, no data before sign-in
    pages = [
        st.Page(str(VIEWS / file), title=title, icon=icon, url_path=url, default=(i == 0))
        for i, (file, title, icon, url) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    with st.sidebar:
        st.caption("HistoQuery · BYOL retrieval for H&E histology")
    start = time.perf_counter()
    try:
        page.run()
    finally:
        logger.info("page %s ran in %.3f s", page.title, time.perf_counter() - start)


def _configure_logging() -> None:
    """Send the dashboard's INFO logs (page run times, cache misses) to the server's stderr, once per process."""
    log = logging.getLogger("dashboard")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


_configure_logging()


main()
