"""Models page: encoder versions (training config, curves, calibration, evaluations), making one active (re-embedding
the stored images first when it lacks vectors for them, as a job with progress) and comparing two versions on the same
labeled pairs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, queries
from dashboard.common import EMPTY_NO_ENCODER, open_services
from dashboard.services import Services
from dashboard.ui import shown_errors

CURVE_SKIP = {"epoch", "step", "time", "seconds", "wall_s", "lr"}


def _metric(metrics: dict, *names: str) -> float | None:
    for name in names:
        value = metrics.get(name)
        if isinstance(value, int | float):
            return float(value)
    return None


def _activate(svc: Services, version: data.VersionInfo, needed: int) -> None:
    """Make ``version`` active: directly when it has a vector for every stored image, else by re-embedding them
    (``ingest.service.submit_reembed``, which switches the active encoder when every image is stored)."""
    from ingest.service import job_status, submit_reembed

    with shown_errors(f"activate {version.name}"):
        if version.stored >= needed:
            from retrieval.catalog import activate_encoder, active_encoder_version

            with svc.session() as session:
                activate_encoder(active_encoder_version(session=session, name=version.name), session=session,
                                 store=svc.store)  # fmt: skip
            st.cache_data.clear()
            st.success(f"**{version.name}** is now the active encoder (it already had every image's vector).")
            return
        embedded = svc.settings.broker_url is None
        note = st.empty()
        note.info(f"Re-embedding {needed - version.stored:,} images with {version.name} ...")
        bar = st.progress(0.0)

        def progress(status: Any) -> None:
            total = max(int(status.total), 1)
            note.info(f"Job {status.id}: re-embedding with {version.name}")
            bar.progress(min(1.0, status.processed / total), text=f"{status.processed} of {status.total} embedded")

        job_id = submit_reembed(
            settings=svc.settings,
            encoder=version.name,
            activate=True,
            store=svc.store if embedded else None,
            progress=progress if embedded else None,
        )
        st.cache_data.clear()
        if embedded:
            status = job_status(job_id, settings=svc.settings)
            bar.progress(1.0, text=f"{status.processed} of {status.total} embedded")
            note.success(f"Job {job_id} {status.status}: {status.done} embedded, {status.failed} failed; "
                         f"{version.name} is active when every image is stored.")  # fmt: skip
        else:
            note.success(f"Job {job_id} queued: {version.name} becomes active when the workers have embedded every "
                         "image (follow it on the Ingestion page).")  # fmt: skip


def _curves(version: data.VersionInfo) -> None:
    from retrieval.catalog import training_log

    rows = training_log(version.checkpoint_path)
    if not rows:
        st.caption("No training log next to the checkpoint (`<checkpoint stem>.metrics.csv`).")
        return
    frame = pd.DataFrame(rows)
    x = "epoch" if "epoch" in frame.columns else None
    numeric = [c for c in frame.columns if c not in CURVE_SKIP and pd.api.types.is_numeric_dtype(frame[c])]
    fig = go.Figure()
    for col in numeric:
        xs = (frame[x] if x else frame.index + 1).tolist()
        fig.add_trace(go.Scatter(x=xs, y=frame[col].tolist(), mode="lines+markers", name=col))
    fig.update_layout(height=300, xaxis_title="epoch", margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h"})  # fmt: skip
    st.plotly_chart(fig, key=f"curves-{version.id}")


def _compare(svc: Services, versions: list[data.VersionInfo]) -> None:
    usable = [v.name for v in versions if v.stored > 0]
    st.subheader("Compare two versions")
    if len(usable) < 2:
        st.caption("Two versions with stored vectors are needed (make another one active, or re-embed).")
        return
    sources = queries.pair_sources(svc.key)
    if not sources:
        st.caption("No labeled pairs to compare on yet (see the Accuracy page).")
        return
    active = next((v.name for v in versions if v.is_active), usable[0])
    c1, c2, c3 = st.columns(3)
    a = c1.selectbox("Version A", usable, index=usable.index(active) if active in usable else 0, key="models_a")
    b = c2.selectbox("Version B", [n for n in usable if n != a], key="models_b")
    default, _ = queries.default_pair_source(svc.key, active, sources)
    source = c3.selectbox("On the labeled pairs", sources, index=default, key="models_source")
    n_pairs = 1000 if source.startswith(queries.DATASET_PREFIX) else 0
    with shown_errors("compare the versions"):
        reports = [queries.pair_report(svc.key, name, source, n_pairs) for name in (a, b)]
        rows = []
        for what, key in (("accuracy", "accuracy"), ("ROC AUC", "roc_auc"), ("EER", "eer"),
                          ("best accuracy (on these pairs)", "best_accuracy"), ("pairs", "n_pairs")):  # fmt: skip
            rows.append({"metric": what, **{rep.version: rep.metrics.get(key) for rep in reports}})
        rows.append({"metric": "precision@10", **{r.version: (r.metrics.get("topk") or {}).get("precision_at_10")
                                                  for r in reports}})  # fmt: skip
        rows.append({"metric": "threshold cos", **{r.version: r.threshold_cos for r in reports}})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="models_compare")
        per_class = [
            queries.per_class(svc.key, rep.version, source, n_pairs, rep.threshold_cos).set_index("class")["accuracy"]
            for rep in reports
        ]
        table = pd.concat(per_class, axis=1, keys=[rep.version for rep in reports]).reset_index()
        st.markdown("**Accuracy per class** (pairs involving each class, at each version's threshold)")
        st.dataframe(table.round(3), hide_index=True, width="stretch", key="models_per_class")


def render() -> None:
    st.title("Models")
    svc = open_services()
    with svc.session() as session:
        versions = data.versions(session=session)
        runs = {v.id: data.eval_runs(v.id, session=session) for v in versions}
        needed = data.done_image_count(session=session)
    if not versions:
        st.info(EMPTY_NO_ENCODER)
        return
    table = pd.DataFrame(
        [
            {
                "active": "✔" if v.is_active else "",
                "name": v.name,
                "backbone": v.backbone,
                "representation": v.representation,
                "dim": v.dim,
                "image size": v.image_size,
                "threshold cos": "not calibrated" if v.threshold_cos is None else f"{v.threshold_cos:.4f}",
                "threshold d = 2-2cos": "-" if v.threshold_cos is None else f"{2 - 2 * v.threshold_cos:.4f}",
                "stored vectors": v.stored,
                "evaluations": len(runs[v.id]),
                "created": v.created_at,
            }
            for v in versions
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    active = next((v for v in versions if v.is_active), None)
    if active is None:
        st.warning("No encoder version is active: queries need one (`histoquery train --activate` or `reembed`).")
    else:
        st.success(f"Active encoder: **{active.name}**")
    for v in versions:
        with st.expander(f"{v.name}{'  (active)' if v.is_active else ''}", expanded=v.is_active):
            if not v.is_active:
                missing = max(0, needed - v.stored)
                label = "Make active" if not missing else f"Re-embed {missing:,} images and make active"
                if st.button(label, key=f"activate-{v.id}", type="primary"):
                    _activate(svc, v, needed)
            left, right = st.columns(2)
            with left:
                st.markdown("**Checkpoint**")
                st.code(f"{v.checkpoint_path}\nsha256 {v.checkpoint_sha256}\ncollection {v.collection}", language=None)
                st.markdown("**Training curves**")
                _curves(v)
                st.markdown("**Training config**")
                st.json(v.training_config or {}, expanded=False)
            with right:
                st.markdown("**Calibration**")
                if v.calibration:
                    st.json(v.calibration, expanded=False)
                else:
                    st.caption("Not calibrated: `histoquery evaluate --calibrate <pairs.csv>`.")
                st.markdown("**Evaluations**")
                if runs[v.id]:
                    st.dataframe(
                        pd.DataFrame(
                            [
                                {
                                    "run": r["id"],
                                    "kind": r["kind"],
                                    "pair set": r["pair_set"],
                                    "accuracy": _metric(r["metrics"], "accuracy", "acc"),
                                    "AUC": _metric(r["metrics"], "auc", "roc_auc"),
                                    "EER": _metric(r["metrics"], "eer"),
                                    "when": r["created_at"],
                                }
                                for r in runs[v.id]
                            ]
                        ),
                        hide_index=True,
                        width="stretch",
                    )
                else:
                    st.caption("No evaluations yet (Accuracy page or `histoquery evaluate`).")
    _compare(svc, versions)


render()
