"""Ingestion page: start ingesting a server-side folder / manifest / slide (allowed roots only), watch jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.common import open_services
from dashboard.services import Services
from dashboard.ui import shown_errors

KINDS = {
    "Folder of images / slides": "folder",
    "Manifest CSV (path[,label] per row)": "manifest",
    "Single slide or image file": "file",
}
REFRESH_S = 2.0
RESOLUTIONS = ("native (level 0)", "target mpp", "magnification")


def _tiling_options(kind: str) -> Any:
    """The slide options of ``histoquery ingest`` (tile size, resolution, overlap, minimum tissue)."""
    from ingest.planning import TilingOptions

    default = TilingOptions()
    with st.expander("Slide options (whole-slide images: .svs, .tif, .ndpi, .mrxs ...)", expanded=kind == "file"):
        c1, c2, c3 = st.columns(3)
        tile_size = c1.number_input("Tile size (px at the target resolution)", 32, 4096, default.tile_size, step=32,
                                    key="ingest_tile_size")  # fmt: skip
        resolution = c2.selectbox(
            "Resolution", RESOLUTIONS, key="ingest_resolution", help="Level 0 as stored, or resampled to a target."
        )
        target = c3.number_input(
            "Target (mpp, or magnification ×)", 0.05, 100.0, 0.5, step=0.05, key="ingest_target",
            disabled=resolution == RESOLUTIONS[0],
            help="Microns per pixel (e.g. 0.5) or magnification (e.g. 20), as chosen under Resolution.",
        )  # fmt: skip
        c4, c5, c6 = st.columns(3)
        overlap = c4.number_input("Overlap (px)", 0, 2048, default.overlap, step=16, key="ingest_overlap")
        min_tissue = c5.slider("Minimum tissue per tile", 0.0, 1.0, default.min_tissue, 0.05, key="ingest_min_tissue")
        default_mpp = c6.number_input(
            "Assumed level-0 mpp when the slide does not say", 0.05, 10.0, default.default_mpp, step=0.05,
            key="ingest_default_mpp",
        )  # fmt: skip
    return TilingOptions(
        tile_size=int(tile_size),
        target_mpp=float(target) if resolution == RESOLUTIONS[1] else None,
        magnification=float(target) if resolution == RESOLUTIONS[2] else None,
        default_mpp=float(default_mpp),
        overlap=int(overlap),
        min_tissue=float(min_tissue),
    )


def _start_form(svc: Services) -> None:
    roots = list(svc.settings.allowed_roots)
    if not roots:
        st.info(
            "Server-side ingestion is disabled: no allowed roots are configured. Set "
            "`HISTOQUERY_ALLOWED_ROOTS='[\"/data/slides\"]'` and restart the dashboard, or use "
            "`histoquery ingest <folder>` on the server."
        )
    else:
        st.caption("Allowed roots: " + ", ".join(f"`{Path(r)}`" for r in roots))
    kind_label = st.radio("What to ingest", list(KINDS), horizontal=True, key="ingest_kind")
    kind = KINDS[kind_label]
    with st.form("start-ingest"):
        path = st.text_input("Server-side path", placeholder=str(roots[0]) if roots else "/data/slides/cohort1")
        dataset = st.text_input("Dataset name", value="default")
        labels_from_folders = False
        if kind == "folder":  # a single file has no sub-folders; a manifest has its own label column
            labels_from_folders = st.checkbox(
                "Use sub-folder names as labels",
                value=True,
                help="FOLDER/<label>/<image>: each image gets its sub-folder's name as its label.",
            )
        tiling = _tiling_options(kind)
        submitted = st.form_submit_button("Start ingestion", type="primary")
    if not submitted:
        return
    if not path.strip():
        st.error("Enter a server-side path under one of the allowed roots.")
        return
    if not dataset.strip():
        st.error("Enter a dataset name (e.g. the cohort or folder name).")
        return
    with shown_errors("start the ingestion"):
        from ingest.paths import check_allowed

        resolved = check_allowed(path.strip(), roots)  # refuses paths outside the roots, `..` and symlinks out
        from ingest.service import job_status, submit_ingest

        # inside the roots, saying what is missing reveals nothing: refuse before a job exists, as the CLI does
        if kind == "folder" and not resolved.is_dir():
            st.error(f"`{path.strip()}` is not a folder under the allowed roots: check the path.")
            return
        if kind != "folder" and not resolved.is_file():
            st.error(f"`{path.strip()}` is not a file under the allowed roots: check the path.")
            return
        embedded = svc.settings.broker_url is None
        note = st.empty()
        note.info(f"Planning the ingestion of `{resolved}` ..." if embedded else f"Queueing `{resolved}` ...")
        bar = st.progress(0.0)

        def progress(status: Any) -> None:  # embedded mode: called after each batch
            total = max(int(status.total), 1)
            note.info(f"Job {status.id} running: `{resolved}`")
            bar.progress(
                min(1.0, status.processed / total),
                text=f"{status.processed} of {status.total} handled ({status.failed} failed)",
            )

        job_id = submit_ingest(
            [] if kind == "manifest" else [resolved],
            settings=svc.settings,
            dataset=dataset.strip(),
            labels_from_folders=labels_from_folders,
            manifest=resolved if kind == "manifest" else None,
            tiling=tiling,
            store=svc.store if embedded else None,  # the embedded store allows one opener per process
            progress=progress if embedded else None,
            roots=roots,  # every file the job opens (folder entries, manifest rows, slides) is checked again
        )
        st.cache_data.clear()  # counts, galleries and maps now include the new images
        st.session_state["ingest_job"] = job_id
        if embedded:
            status = job_status(job_id, settings=svc.settings)
            bar.progress(1.0, text=f"{status.processed} of {status.total} handled")
            note.success(
                f"Job {job_id} {status.status}: {status.done} stored, {status.skipped} already stored, "
                f"{status.failed} failed, of {status.total} (`{resolved}`)."
            )
        else:
            bar.progress(0.0, text="queued")
            note.success(f"Job {job_id} queued for the workers (`{resolved}`): it is followed in the table below.")


def _jobs(svc: Services, live: bool) -> None:
    with svc.session() as session:
        jobs = data.jobs(session=session)
    if live and not any(j.status in ("queued", "running") for j in jobs):
        st.cache_data.clear()  # the jobs finished: counts, galleries and maps include their images
        st.rerun(scope="app")  # stop auto-refreshing
    if not jobs:
        st.info("No ingestion jobs yet.")
        return
    table = pd.DataFrame(
        [
            {
                "job": j.id,
                "kind": j.kind,
                "status": j.status,
                "dataset": j.dataset,
                "progress": j.progress,
                "done": j.done,
                "failed": j.failed,
                "skipped": j.skipped,
                "total": j.total,
                "inputs": j.description[:200],
                "options": j.options,
                "created": j.created_at,
                "finished": j.finished_at,
            }
            for j in jobs
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
    )
    ids = [j.id for j in jobs]
    chosen = st.session_state.get("ingest_job")
    job_id = st.selectbox("Job details", ids, index=ids.index(chosen) if chosen in ids else 0)
    job = next(j for j in jobs if j.id == job_id)
    st.progress(
        job.progress,
        text=f"Job {job.id}: {job.status} · {job.done} done, {job.failed} failed, {job.skipped} skipped of {job.total}",
    )
    if job.error:
        st.error(f"Job {job.id} failed: {job.error}")
    with svc.session() as session:
        failures = data.job_failures(job.id, session=session)
    if failures:
        st.markdown(f"**{len(failures)} failed file(s)**")
        st.dataframe(pd.DataFrame(failures), hide_index=True, width="stretch")
    elif job.status in ("done", "failed"):
        st.caption("No failed files.")


def render() -> None:
    st.title("Ingestion")
    svc = open_services()
    st.subheader("Start an ingestion")
    _start_form(svc)
    st.subheader("Jobs")
    with svc.session() as session:
        live = any(j.status in ("queued", "running") for j in data.jobs(limit=50, session=session))
    if live:
        st.caption(f"Jobs in progress: refreshing every {REFRESH_S:.0f} s.")
        _live_jobs(svc, True)
    else:
        _static_jobs(svc, False)


_live_jobs = st.fragment(run_every=REFRESH_S)(_jobs)
_static_jobs = st.fragment(_jobs)


render()
