"""Models page: encoder versions with training config, metrics and calibrated threshold; which one is active."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.common import EMPTY_NO_ENCODER, open_services


def _metric(metrics: dict, *names: str) -> float | None:
    for name in names:
        value = metrics.get(name)
        if isinstance(value, int | float):
            return float(value)
    return None


def render() -> None:
    st.title("Models")
    svc = open_services()
    with svc.session() as session:
        versions = data.versions(session=session)
        runs = {v.id: data.eval_runs(v.id, session=session) for v in versions}
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
            left, right = st.columns(2)
            with left:
                st.markdown("**Checkpoint**")
                st.code(f"{v.checkpoint_path}\nsha256 {v.checkpoint_sha256}\ncollection {v.collection}", language=None)
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


render()
