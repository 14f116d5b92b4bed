"""How the model does on the patients it scored, once their outcomes are known, beside its figures at training.

Fetched from the service (`GET /performance`) only when the clinician asks, so the form never waits for it.
Shown as plain tables: nothing the service sends is rendered as HTML.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from bento.quality.privacy import PUBLISH_ROWS
from ui.client import Client, ServiceError

SHOW = "ui:show_performance"
ESTIMATED = "estimated:"  # the estimates' rows, beside the live figures of the same window
ROWS = (
    ("labelled_rows", "Patients with a known outcome"),
    ("roc_auc", "ROC-AUC (discrimination)"),
    ("roc_auc_interval", "ROC-AUC 95% interval"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("brier", "Brier score (lower is better)"),
    ("ece", "Calibration error (lower is better)"),
    ("flagged_rate", "Share flagged"),
    ("precision", "Readmitted among the flagged"),
    (f"{ESTIMATED}scored_rows", "Patients scored (estimates: all, outcome or not)"),
    (f"{ESTIMATED}estimated_roc_auc", "Estimated ROC-AUC, before outcomes"),
    (f"{ESTIMATED}estimated_precision", "Estimated readmitted among the flagged"),
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
    estimated = {version: w for version, w in answer.get("estimated", {}).items() if isinstance(w, dict)}
    versions = sorted(set(live) | set(estimated) | set(answer["training"]), key=str)
    if not any(_rows(windows) for windows in live.values()):
        st.info(
            f"Fewer than {PUBLISH_ROWS} outcomes have been received yet, so the model cannot be checked against "
            "what happened to our patients. The figures appear here once outcomes are sent to the service (POST "
            f"/feedback), {PUBLISH_ROWS} at a time, so that no change of them describes a single patient."
        )
    for version in versions:
        st.markdown(f"**Model version {_plain(version)}**")
        st.table(table(live.get(version, {}), answer["training"].get(version), estimated.get(version, {})))
    st.caption(
        f"Live figures use the predictions of the last 30 and 90 days whose outcome is known, {PUBLISH_ROWS} "
        "outcomes at a time (the earliest recorded); with few patients "
        "they move a lot (see the interval). The estimates use every prediction of the window, before any outcome "
        "is known, assuming the model's risks are as accurate for our patients as at training; they cannot see a "
        "change in what happens to patients like these (only the outcomes show that, a month later). The training "
        "figures come from the model card's test split."
    )


def _plain(text: str) -> str:
    """`text` with Markdown's special characters escaped."""
    return "".join(f"\\{c}" if c in "\\`*_{}[]()<>#+-.!|~" else c for c in text)


def _rows(windows: dict[str, Any]) -> int:
    return sum(int(figures.get("labelled_rows", 0)) for figures in windows.values() if isinstance(figures, dict))


def table(
    windows: dict[str, Any], training: dict[str, Any] | None, estimated: dict[str, Any] | None = None
) -> pd.DataFrame:
    """One model version: a row per figure, training beside each window and its estimates ("-" where a figure is
    missing)."""
    columns = {TRAINING: training or {}}
    for w in sorted(set(windows) | set(estimated or {}), key=lambda w: int(w.removesuffix("d"))):
        live, guessed = windows.get(w), (estimated or {}).get(w)
        merged = (live if isinstance(live, dict) else {}) | {
            f"{ESTIMATED}{k}": v for k, v in (guessed.items() if isinstance(guessed, dict) else ())
        }
        columns[f"Last {w.removesuffix('d')} days"] = merged
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
    if key in ("labelled_rows", f"{ESTIMATED}scored_rows"):
        return f"{int(value):,}"
    percent = ("flagged_rate", "precision", f"{ESTIMATED}estimated_precision")
    return f"{value:.1%}" if key in percent else f"{value:.3f}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
