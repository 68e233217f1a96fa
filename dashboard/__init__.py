"""Streamlit dashboard: pages only, logic lives in retrieval/ and ingest/."""
