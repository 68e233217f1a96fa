"""Accuracy page: labeled pairs (a stored pair set or generated from labels) scored by one or more encoder versions:
accuracy vs threshold with the calibrated threshold marked, the study's sweep table, ROC with AUC, EER, a per-class
breakdown and rank-10 galleries (ranked within the query's dataset, never from its group).

The page opens on the held-out side (the active version's newest evaluation that was not in-sample); the pairs the
threshold was calibrated on are marked "in-sample" and a warning says so when they are shown."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, queries
from dashboard.common import active_version_or_stop, open_services
from dashboard.services import Services
from dashboard.ui import shown_errors

GALLERY_QUERIES = 3


def _fmt(value: object, pattern: str = "{:.3f}") -> str:
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return pattern.format(value)
    return "-"


def _summary(reports: list[queries.Report]) -> None:
    rows = []
    for rep in reports:
        m = rep.metrics
        ci = m.get("accuracy_ci95") or [None, None]
        topk = m.get("topk") or {}
        rows.append(
            {
                "encoder version": rep.version,
                "threshold cos": round(rep.threshold_cos, 4),
                "threshold d": round(2 - 2 * rep.threshold_cos, 4),
                "threshold from": rep.threshold_source,
                "accuracy": m.get("accuracy"),
                "accuracy 95% CI": f"{_fmt(ci[0])} – {_fmt(ci[1])}",
                "ROC AUC": m.get("roc_auc"),
                "EER": m.get("eer"),
                "best accuracy (on these pairs)": m.get("best_accuracy"),
                "precision@10": topk.get("precision_at_10", "-"),
                "pairs": m.get("n_pairs"),
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="accuracy_summary")
    scope = reports[0].metrics.get("topk_scope")
    if scope:
        st.caption(f"precision@10: {scope}.")


def _curves(reports: list[queries.Report]) -> None:
    acc_fig, roc_fig = go.Figure(), go.Figure()
    lows = [rep.threshold_cos for rep in reports]
    for rep in reports:
        lows += [row["threshold_cos"] for row in rep.curve if 0.0 < row["tpr"] < 1.0 or 0.0 < row["fpr"] < 1.0]
        curve = pd.DataFrame(rep.curve)
        acc_fig.add_trace(go.Scatter(x=curve.threshold_cos, y=curve.accuracy, mode="lines", name=rep.version))
        acc_fig.add_vline(
            x=rep.threshold_cos,
            line_dash="dash",
            annotation_text=f"{rep.version}: {rep.threshold_source} {rep.threshold_cos:.3f}",
        )
        auc = rep.metrics.get("roc_auc")
        roc = curve.sort_values(["fpr", "tpr"])
        roc_fig.add_trace(go.Scatter(x=roc.fpr, y=roc.tpr, mode="lines", name=f"{rep.version} (AUC {_fmt(auc)})"))
        eer = rep.metrics.get("eer")
        if isinstance(eer, float):
            roc_fig.add_trace(
                go.Scatter(
                    x=[eer], y=[1 - eer], mode="markers", marker={"size": 10}, name=f"{rep.version} EER {eer:.3f}"
                )
            )
    roc_fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="chance", showlegend=False
        )
    )
    x_low = max(-1.0, min(lows) - 0.02)
    acc_fig.update_layout(
        xaxis_range=[x_low, 1.0],
        height=380,
        xaxis_title="threshold (cosine; d = 2 − 2·cos)",
        yaxis_title="accuracy",
        yaxis_range=[0, 1.02],
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h"},
    )
    roc_fig.update_layout(
        height=380,
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"x": 0.98, "y": 0.02, "xanchor": "right", "yanchor": "bottom", "bgcolor": "rgba(255,255,255,0.8)"},
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Accuracy vs threshold**")
        st.plotly_chart(acc_fig, key="accuracy_curve")
    with right:
        st.markdown("**ROC**")
        st.plotly_chart(roc_fig, key="roc_curve")


def _sweep_tables(reports: list[queries.Report]) -> None:
    st.markdown("**Threshold sweep** (as in the study: same category when d = 2 − 2·cos is below the threshold)")
    tabs = st.tabs([rep.version for rep in reports])
    for tab, rep in zip(tabs, reports, strict=True):
        with tab:
            st.dataframe(pd.DataFrame(rep.metrics.get("sweep", [])).round(4), hide_index=True, width="stretch")


def _per_class(svc: Services, source: str, n_pairs: int, report: queries.Report) -> None:
    table = queries.per_class(svc.key, report.version, source, n_pairs, report.threshold_cos)
    if table.empty:
        return
    st.markdown(f"**Per-class breakdown** ({report.version}, pairs involving each class)")
    st.dataframe(table.round(3), hide_index=True, width="stretch", key="accuracy_per_class")


def _galleries(svc: Services, scored: queries.Scored, version: str) -> None:
    ids = sorted({i for pair in scored.pairs for i in pair})
    if not ids:
        return
    rng = np.random.default_rng(0)
    picks = [int(i) for i in rng.choice(ids, size=min(GALLERY_QUERIES, len(ids)), replace=False)]
    datasets = sorted({info.dataset for info in queries.image_infos(svc.key, tuple(picks)).values()})
    st.markdown(
        f"**Rank-10 galleries** ({version}; ranked within dataset {', '.join(datasets) or '-'}, never from the "
        "query's own group; ✓ = same label as the query)"
    )
    for q in picks:
        q_dataset = queries.image_infos(svc.key, (q,)).get(q)
        results = queries.top_k_by_id(
            svc.key, version, q, 10, q_dataset.dataset if q_dataset else None, None, None,
            exclude_same_group=True, exclude_self=True,
        )  # fmt: skip
        infos = queries.image_infos(svc.key, (q, *(r.image_id for r in results)))
        qlabel = infos[q].label if q in infos else None
        hits = sum(1 for r in results if r.image_id in infos and infos[r.image_id].label == qlabel)
        st.caption(f"Query #{q} · label **{qlabel or '-'}** · {hits}/{len(results)} of its top 10 share the label")
        cols = st.columns(11)
        cols[0].image(queries.thumbnail(svc.key, q), caption=f"query #{q} · {qlabel or '(no label)'}", width="stretch")
        for col, res in zip(cols[1:], results, strict=False):
            label = infos[res.image_id].label if res.image_id in infos else None
            mark = "✓" if label is not None and label == qlabel else "✗"
            with col:
                caption = f"{mark} {res.score:.3f} · #{res.image_id} · {label or '(no label)'}"
                st.image(queries.thumbnail(svc.key, res.image_id), caption=caption, width="stretch")
                if st.button("Open", key=f"acc-open-{q}-{res.image_id}", help=f"Search with image #{res.image_id}"):
                    st.session_state["hq_next_query"] = int(res.image_id)
                    st.switch_page("views/search.py")


def render() -> None:
    st.title("Accuracy")
    svc = open_services()
    active = active_version_or_stop(svc)
    with svc.session() as session:
        usable = [v for v in data.versions(session=session) if v.stored > 0]
    sources = queries.pair_sources(svc.key)
    with svc.session() as session:
        pair_counts = data.pair_sets(session=session)
    if not sources:
        st.info(
            "No labeled pairs yet: ingest a labeled dataset (sub-folder names as labels) or load a pairs CSV "
            "with `histoquery evaluate --pairs pairs.csv`."
        )
        return
    c1, c2, c3 = st.columns([2, 1, 2])
    default, in_sample = queries.default_pair_source(svc.key, active.name, sources)
    source = c1.selectbox(
        "Labeled pairs",
        sources,
        index=default,
        key="accuracy_source",
        format_func=lambda s: f"{s}  (calibration: in-sample)" if s in in_sample else s,
        help="Opens on the held-out pairs of the active version; the calibration pairs are marked in-sample.",
    )
    if source.startswith(queries.DATASET_PREFIX):
        n_pairs = int(
            c2.number_input(
                "Pairs to generate",
                100,
                20000,
                1000,
                step=100,
                key="accuracy_n_pairs",
                help="Balanced (half same-label, half different-label), seeded; never two images of one group when "
                "the images have groups. Fewer are drawn when the labels do not allow as many distinct pairs.",
            )
        )
    else:
        n_pairs = 0  # a stored pair set is scored whole
        c2.metric("Stored pairs", f"{pair_counts.get(source.removeprefix(queries.PAIRSET_PREFIX), 0):,}")
    names = [v.name for v in usable]
    chosen = c3.multiselect("Encoder versions to compare", names, default=[active.name], key="accuracy_versions")
    if not chosen:
        st.info("Pick at least one encoder version.")
        return
    reports: list[queries.Report] = []
    for name in chosen:
        with shown_errors(f"evaluate {name}"):
            reports.append(queries.pair_report(svc.key, name, source, n_pairs))
    if not reports:
        return
    for rep in reports:
        if rep.metrics.get("in_sample"):
            st.warning(
                f"In-sample for {rep.version}: its threshold was calibrated on {rep.metrics['in_sample']}. The "
                "accuracy here is the best accuracy on these pairs, not a held-out result."
            )
    info = reports[0].metrics
    drawn = int(info.get("n_pairs") or 0)
    if n_pairs and drawn < n_pairs:
        asked = next((w for w in info.get("warnings", []) if w.startswith("asked for")), None)
        st.info(
            f"**{drawn:,} pairs, not the {n_pairs:,} asked for**: "
            + (asked or "some pairs could not be scored (no stored vector under this encoder version).")
        )
    if "groups" in info:
        if info["groups"]:
            disjoint = "group-disjoint" if info.get("group_disjoint") else "NOT group-disjoint"
            st.caption(f"{info.get('images')} images in {info['groups']} groups; pairs {disjoint}; seed {info['seed']}")
        for warning in info.get("warnings", []):
            if not warning.startswith("asked for"):  # said above, next to the pair count
                st.warning(warning)
    _summary(reports)
    _curves(reports)
    _sweep_tables(reports)
    first = reports[0]
    with shown_errors("break the accuracy down by class"):
        scored = queries.scored_pairs(svc.key, first.version, source, n_pairs)
        _per_class(svc, source, n_pairs, first)
        _galleries(svc, scored, first.version)
    if st.button("Record these evaluations", help="Store an evaluation run per version (shown on the Models page)"):
        with shown_errors("record the evaluation"):
            for rep in reports:
                out = queries.record_evaluation(svc.key, rep.version, source, n_pairs)
                st.success(f"Recorded evaluation run {out.get('eval_run_id')} for {rep.version}.")


render()
