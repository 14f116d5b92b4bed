"""How one answer of the service is shown: the risk, why, and which model said so."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from bento import features

BANDS: dict[str, tuple[str, str, str]] = {  # band: (words, colour, background)
    "low": ("Low risk", "#1b7a3a", "#e8f5ec"),
    "moderate": ("Moderate risk", "#a15c00", "#fff4e0"),
    "high": ("High risk", "#b3261e", "#fdecea"),
}
RAISES, LOWERS = "raises risk", "lowers risk"
INTENDED_USE = (
    "**Decision support, not diagnosis.** The estimate helps plan discharge and follow-up (a call, a "
    "medication review, a home visit). It must not be used to deny or ration care; read it together with "
    "what the record does not capture."
)


UNUSUAL_WORDS = {  # an answer's unusual reason: how the notice says it of a field
    "above_training_range": "{label} above any in the training data",
    "below_training_range": "{label} below any in the training data",
    "rare_category": "{label} rare in the training data",
    "rare_code": "{label} rare in the training data",
}
OUTLIER_WORDS = "this combination of stay, visits, tests and medications"


def unusual_notice(findings: Sequence[Mapping[str, Any]]) -> str:
    """The notice beside the risk where the patient lies outside the training data ("" where not): plain text."""
    said = []
    for finding in findings:
        f = features.FIELDS_BY_NAME.get(str(finding.get("field")))
        words = UNUSUAL_WORDS.get(str(finding.get("reason")))
        said.append(words.format(label=f.label) if f is not None and words else OUTLIER_WORDS)
    if not said:
        return ""
    return (
        f"Few patients like this in the training data: {'; '.join(dict.fromkeys(said))}. "
        "The estimate may be less reliable for this patient."
    )


def percent(probability: float) -> str:
    """A probability as the page shows it ("19.3%")."""
    return f"{probability * 100:.1f}%"


def show(answer: Mapping[str, Any]) -> None:
    """The risk with its band and colour, the threshold, the top factors as a chart, and the model."""
    band = str(answer["risk_band"])
    words, colour, background = BANDS.get(band, (html.escape(band), "#333", "#f2f2f2"))
    model = answer["model"]
    threshold = float(model.get("threshold", float("nan")))
    st.markdown(
        f'<div style="border-left:10px solid {colour};background:{background};padding:0.8rem 1.2rem;'
        f'border-radius:6px;margin-bottom:0.8rem">'
        f'<div style="color:{colour};font-size:2.6rem;font-weight:700;line-height:1.1" id="risk-probability">'
        f"{percent(answer['probability'])}</div>"
        f'<div style="color:{colour};font-size:1.3rem;font-weight:600" id="risk-band">{words}</div>'
        f"<div>estimated chance that this patient is readmitted within 30 days of discharge</div></div>",
        unsafe_allow_html=True,
    )
    notice = unusual_notice(answer.get("unusual") or [])
    if notice:
        st.markdown(
            '<div id="unusual-notice" style="border-left:10px solid #5f6368;background:#f1f3f4;padding:0.6rem 1.2rem;'
            f'border-radius:6px;margin-bottom:0.8rem">&#9888; {html.escape(notice)}</div>',
            unsafe_allow_html=True,
        )
    st.markdown(
        f"The model flags a patient for follow-up at **{percent(threshold)}** or more (its operating threshold): "
        "**high** is at or above it, **moderate** is above the average readmission rate but below it, "
        "**low** is below the average rate."
    )
    factors = answer.get("factors") or []
    if factors:
        st.subheader("What moved this estimate")
        st.altair_chart(factor_chart(factors), height=_chart_height(len(factors)))
        st.caption(
            "Red bars raised the risk, green bars lowered it; the longer the bar, the stronger the effect "
            "(contribution in the model's log-odds)."
        )
    st.caption(
        f"Model **{model.get('name', '?')}** version **{model.get('version', '?')}** "
        f"(`{model.get('bento_tag', '?')}`). {INTENDED_USE} See the model card in the tab *About the model*."
    )


def factor_chart(factors: Sequence[Mapping[str, Any]]) -> alt.Chart:
    """A horizontal bar per factor: its contribution, red when it raises the risk, green when it lowers it."""
    frame = pd.DataFrame(
        {
            "factor": [f"{f['label']}: {f['value']}" for f in factors],
            "contribution": [float(f["contribution"]) for f in factors],
            "effect": [f["effect"] for f in factors],
        }
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title="lowers risk  <-   ->  raises risk"),
            y=alt.Y("factor:N", sort=None, title=None, axis=alt.Axis(labelLimit=420, labelOverlap=False)),
            color=alt.Color(
                "effect:N",
                scale=alt.Scale(domain=[RAISES, LOWERS], range=[BANDS["high"][1], BANDS["low"][1]]),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=["factor", "effect", alt.Tooltip("contribution:Q", format=".3f")],
        )
        .properties(height=_chart_height(len(frame)))
    )


def _chart_height(bars: int) -> int:
    return 44 * bars + 60


def model_card(path: Path) -> None:
    """The intended use, and the full model card where its file is readable."""
    st.markdown(INTENDED_USE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        st.info(f"The full model card is not available here ({path}); ask the team that runs the model.")
        return
    with st.expander("Full model card", expanded=False):
        st.markdown(text)
