"""HistoQuery dashboard: the Streamlit entry point (``histoquery dashboard`` or ``streamlit run dashboard/app.py``).

Pages live in ``dashboard/views/``; each is a script that renders one page from ``retrieval`` / ``ingest`` calls.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).resolve().parent / "views"

# (file, title, icon, url path)
PAGES = (
    ("search.py", "Search", ":material/search:", "search"),
    ("pair.py", "Pair", ":material/compare:", "pair"),
    ("clusters.py", "Clusters", ":material/scatter_plot:", "clusters"),
    ("accuracy.py", "Accuracy", ":material/query_stats:", "accuracy"),
    ("ingestion.py", "Ingestion", ":material/upload_file:", "ingestion"),
    ("models.py", "Models", ":material/model_training:", "models"),
)


def main() -> None:
    st.set_page_config(page_title="HistoQuery", page_icon=":material/biotech:", layout="wide")
    pages = [
        st.Page(str(VIEWS / file), title=title, icon=icon, url_path=url, default=(i == 0))
        for i, (file, title, icon, url) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    with st.sidebar:
        st.caption("HistoQuery · BYOL retrieval for H&E histology")
    page.run()


main()
