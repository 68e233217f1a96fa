"""Clusters: the 2-D projection of an encoder version's stored vectors (``retrieval.projection``), cached on disk
and in memory, computed in a background thread when it is slow (UMAP).

The one place for the cluster view's queries: a new way to choose or sample the points mapped belongs here.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from dashboard.services import services_by_key

logger = logging.getLogger(__name__)


@st.cache_data(ttl=24 * 3600, max_entries=16, show_spinner="Computing the map (once per encoder version) ...")
def projection(key: str, version: str, method: str, max_points: int, stored: int) -> Any:
    """The cluster-map projection (disk-cached by ``retrieval.projection``; ``stored`` invalidates this cache)."""
    from retrieval.catalog import active_encoder_version
    from retrieval.projection import load_or_compute

    svc = services_by_key(key)
    with svc.session() as session:
        ver = active_encoder_version(session=session, name=version)
        return load_or_compute(
            ver,
            "umap" if method == "umap" else "pca",
            home=svc.settings.home,
            session=session,
            store=svc.store,
            max_points=max_points,
        )


def cached_projection(key: str, version: str, method: str, max_points: int) -> Any:
    """The projection from its disk cache when valid (``retrieval.projection.load_cached``), else None."""
    from retrieval.catalog import active_encoder_version
    from retrieval.projection import load_cached

    svc = services_by_key(key)
    with svc.session() as session:
        ver = active_encoder_version(session=session, name=version)
        return load_cached(ver, "umap" if method == "umap" else "pca", home=svc.settings.home, session=session,
                           max_points=max_points)  # fmt: skip


@st.cache_resource(show_spinner=False)
def _background_projections() -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Projections being computed in background threads, by (settings key, version, method, points)."""
    return {}


def background_projection(key: str, version: str, method: str, max_points: int, retry: bool = False) -> dict[str, Any]:
    """Start (once per process) computing a projection in a background thread; its state: ``running`` (bool),
    ``error`` (str or None), ``started`` (time). The result is the disk cache file (:func:`cached_projection`)."""
    import threading
    import time

    jobs = _background_projections()
    job_key = (key, version, method, int(max_points))
    job = jobs.get(job_key)
    if job is not None and (job["running"] or (job["error"] is not None and not retry)):
        return job  # still running, or failed (shown until the user retries)
    job = {"running": True, "error": None, "started": time.time()}
    jobs[job_key] = job

    def work() -> None:
        from retrieval.catalog import active_encoder_version
        from retrieval.projection import load_or_compute

        svc = services_by_key(key)
        try:
            with svc.session() as session:
                ver = active_encoder_version(session=session, name=version)
                load_or_compute(ver, "umap" if method == "umap" else "pca", home=svc.settings.home, session=session,
                                store=svc.store, max_points=max_points)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - shown on the page; the thread must not die silently
            logger.exception("background %s projection of %s failed", method, version)
            job["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            job["running"] = False

    threading.Thread(target=work, name=f"projection-{method}-{version}", daemon=True).start()
    return job
