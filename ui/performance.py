"""How the model does on the patients it scored, once their outcomes are known, beside its figures at training.

Fetched from the service (`GET /performance`) only when the clinician asks, so the form never waits for it.
Shown as plain tables: nothing the service sends is rendered as HTML.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui.client import Client, ServiceError

SHOW = "ui:show_performance"
ROWS = (
    ("labelled_rows", "Patients with a known outcome"),
    ("roc_auc", "ROC-AUC (discrimination)"),
    ("roc_auc_interval", "ROC-AUC 95% interval"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("brier", "Brier score (lower is better)"),
    ("ece", "Calibration error (lower is better)"),
    ("flagged_rate", "Share flagged"),
    ("precision", "Readmitted among the flagged"),
)
TRAINING = "At training (held-out test split)"


def live_performance(client: Client) -> None:
    """A toggle; when on, the live figures of each model version next to the training ones."""
    if not st.toggle("Show how the model does on our patients", key=SHOW):
        return
    try:
        answer = client.performance()
    except ServiceError as error:
        st.info(f"Live performance is not available now. {error}")
        return
    live = {version: w for version, w in answer["live"].items() if isinstance(w, dict)}
    versions = sorted(set(live) | set(answer["training"]), key=str)
    if not any(_rows(windows) for windows in live.values()):
        st.info(
            "No outcomes have been received yet, so the model cannot be checked against what happened to our "
            "patients. The figures appear here once outcomes are sent to the service (POST /feedback)."
        )
    for version in versions:
        st.markdown(f"**Model version {_plain(version)}**")
        st.table(table(live.get(version, {}), answer["training"].get(version)))
    st.caption(
        "Live figures use the predictions of the last 30 and 90 days whose outcome is known; with few patients "
        "they move a lot (see the interval). The training figures come from the model card's test split."
    )


def _plain(text: str) -> str:
    """`text` with Markdown's special characters escaped."""
    return "".join(f"\\{c}" if c in "\\`*_{}[]()<>#+-.!|~" else c for c in text)


def _rows(windows: dict[str, Any]) -> int:
    return sum(int(figures.get("labelled_rows", 0)) for figures in windows.values() if isinstance(figures, dict))


def table(windows: dict[str, Any], training: dict[str, Any] | None) -> pd.DataFrame:
    """One model version: a row per figure, training beside each window ("-" where a figure is missing)."""
    columns = {TRAINING: training or {}} | {f"Last {w.removesuffix('d')} days": f for w, f in windows.items()}
    return pd.DataFrame(
        {name: [_cell(figures, key) for key, _ in ROWS] for name, figures in columns.items()},
        index=[label for _, label in ROWS],
    )


def _cell(figures: Any, key: str) -> str:
    if not isinstance(figures, dict):
        return "-"
    if key == "roc_auc_interval":
        low, high = figures.get("roc_auc_ci_low"), figures.get("roc_auc_ci_high")
        return f"{low:.3f} - {high:.3f}" if _number(low) and _number(high) else "-"
    value = figures.get(key)
    if not _number(value):
        return "-"
    if key == "labelled_rows":
        return f"{int(value):,}"
    return f"{value:.1%}" if key in ("flagged_rate", "precision") else f"{value:.3f}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
