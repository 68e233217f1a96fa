"""The Pair page's confidence next to its decision: how often labeled pairs scoring like this pair are
same-category pairs (``retrieval.confidence.local_confidence`` on the active version's calibration pairs)."""

from __future__ import annotations

import streamlit as st

from dashboard import data, queries
from dashboard.services import Services

CONFIDENCE_LABEL = "Same among similar pairs"
HELP = (
    "Of the labeled calibration pairs of the active encoder version that scored closest to this pair, the share "
    "that are same-category pairs: how often a score like this one was a true match."
)


def show(svc: Services, version: data.VersionInfo, outcome: queries.PairOutcome) -> None:
    """How often labeled pairs scoring like this one are same-category pairs: the calibration pairs of the
    active encoder version, the nearest ``retrieval.confidence.NEIGHBOURS`` by cosine, with a 95% interval."""
    from retrieval.confidence import local_confidence

    source = queries.calibration_pair_source(version)
    conf = None
    if source is not None:
        scored = queries.scored_pairs(svc.key, version.name, source)
        conf = local_confidence(outcome.cos, scored.scores, scored.labels)
    if conf is None or source is None:
        st.metric(CONFIDENCE_LABEL, "none", help=HELP)
        st.caption(
            f"No labeled pairs: the threshold of {version.name} was not calibrated on a stored pair set "
            "(`histoquery evaluate ... --calibrate --pair-set NAME`), so there is nothing to compare this score with."
        )
        return
    low, high = conf.ci95
    st.metric(CONFIDENCE_LABEL, f"{conf.same_share:.0%}", help=HELP)
    st.caption(
        f"Of the {conf.n} calibration pairs scoring closest to this pair (cos {conf.low:.3f} to {conf.high:.3f}), "
        f"{conf.n_same} are same-category pairs (95% CI {low:.0%} to {high:.0%}); "
        f"{conf.n_total} calibration pairs in all ({source.removeprefix(queries.PAIRSET_PREFIX)})."
    )
