"""`readmission compare` and `readmission promote --live`: champion and challenger on the same patients.

The challenger scores every served prediction in shadow; the prediction log holds both probabilities under one
prediction id. These read the labelled ones from the log (as `readmission monitor` does: training/monitor.py) and
compare the two models on them with the service's code (bento/quality/comparison.py: the oldest multiple of 20
rows by outcome time, as the service publishes them): per window, each ROC-AUC and Brier score, the ROC-AUC
difference challenger - champion with DeLong's paired 95% interval and p-value, and the Brier difference with its
interval. `promote --live` moves the champion alias to the challenger only when the
ROC-AUC difference's whole interval lies above a margin, for exactly the pair of versions the aliases name now.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from bento.quality import comparison
from bento.quality.windows import WINDOWS, Figures
from training import monitor, registry
from training.settings import CHALLENGER, CHAMPION, TrainingSettings

TAG = "live_promotion"  # prefix of the evidence's tags on both model versions
LINES = (
    ("rows", "labelled predictions scored by both"),
    ("champion_roc_auc", "ROC-AUC, champion"),
    ("challenger_roc_auc", "ROC-AUC, challenger"),
    ("roc_auc_difference", "ROC-AUC difference (challenger - champion)"),
    ("roc_auc_difference_low", "its 95% interval (DeLong, paired)"),
    ("p_value", "p-value (no difference)"),
    ("champion_brier", "Brier score, champion"),
    ("challenger_brier", "Brier score, challenger"),
    ("brier_difference", "Brier difference (challenger - champion: below 0 is better)"),
    ("brier_difference_low", "its 95% interval"),
)


def read() -> tuple[list[dict[str, Any]], str]:
    """The comparison per pair of versions and window (bento/quality/comparison.py's measure) of the prediction
    log, and where the log was read."""
    paired, where = monitor.read_log(lambda store, since: store.paired(since))
    return comparison.measure(paired, time.time()), where


def report(measured: list[dict[str, Any]], windows: list[str]) -> str:
    """A markdown table per pair of versions: the figures per window."""
    if not measured:
        return "no labelled predictions scored by a challenger in shadow in the last 90 days"
    sections = []
    for pair in measured:
        lines = [
            f"champion version {pair['champion_version']}, challenger version {pair['challenger_version']}",
            "",
            "| figure | " + " | ".join(f"last {w}" for w in windows) + " |",
            "|---" * (len(windows) + 1) + "|",
        ]
        for key, label in LINES:
            lines.append(f"| {label} | " + " | ".join(_cell(pair["windows"][w], key) for w in windows) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _cell(figures: Figures, key: str) -> str:
    if key not in figures:
        return "-"
    if key == "rows":
        return f"{int(figures[key]):,}"
    if key.endswith("_low"):
        return f"{figures[key]:+.4f} to {figures[key.removesuffix('_low') + '_high']:+.4f}"
    return f"{figures[key]:+.4f}" if key.endswith("difference") else f"{figures[key]:.4f}"


def run(window: str | None) -> None:
    """Print the comparison of every pair of versions in the log, for one window ("30d") or every one."""
    measured, where = read()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"prediction log {where} ({stamp})\n")
    print(report(measured, [window] if window else list(WINDOWS)))


def decide(measured: list[dict[str, Any]], champion: str, challenger: str, window: str, margin: float) -> Figures:
    """The figures of (champion, challenger) in `window` when the ROC-AUC difference's 95% interval lies above
    `margin`; else NotPromotedError saying why."""
    of_pair = [p for p in measured if (p["champion_version"], p["challenger_version"]) == (champion, challenger)]
    found = of_pair[0]["windows"][window] if of_pair else None
    pair = f"champion version {champion} and challenger version {challenger}"
    if not found or not found.get("rows"):
        raise registry.NotPromotedError(f"no labelled predictions of {pair} in the last {window}: nothing changed")
    if "roc_auc_difference_low" not in found:
        raise registry.NotPromotedError(
            f"the ROC-AUC difference of {pair} cannot be computed on {int(found['rows']):,} labelled predictions "
            f"in the last {window} (at least two of each outcome are needed): nothing changed"
        )
    if found["roc_auc_difference_low"] <= margin:
        raise registry.NotPromotedError(
            f"the challenger is not better by more than {margin:g}: ROC-AUC difference "
            f"{found['roc_auc_difference']:+.4f} (95% interval {found['roc_auc_difference_low']:+.4f} to "
            f"{found['roc_auc_difference_high']:+.4f}, p = {found['p_value']:.3g}) on {int(found['rows']):,} "
            f"labelled predictions in the last {window}: nothing changed"
        )
    return found


def promote_live(settings: TrainingSettings, window: str, margin: float) -> tuple[str, str]:
    """Move the champion alias to the challenger on the evidence of the log (NotPromotedError where it does not
    suffice), record the evidence as tags on both versions and remove the challenger alias; the two versions."""
    registry.connect(settings)
    champion, challenger = registry.aliased(CHAMPION), registry.aliased(CHALLENGER)
    measured, _ = read()
    found = decide(measured, champion, challenger, window, margin)
    evidence = {
        f"{TAG}.window": window,
        f"{TAG}.margin": f"{margin:g}",
        f"{TAG}.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        f"{TAG}.champion_version": champion,
        f"{TAG}.challenger_version": challenger,
        **{f"{TAG}.{name}": str(int(value) if name == "rows" else value) for name, value in found.items()},
    }
    registry.promote_challenger(champion, challenger, evidence, f"{TAG}.role")
    return champion, challenger
