"""Model figures over windows of labelled predictions: per model version, the last 30 and 90 days.

The figures of bento/quality/figures.py on the predictions of the log that have a true outcome (`POST /feedback`),
each version and window over its oldest multiple of PUBLISH_ROWS labelled rows by the time the outcome was recorded
(bento/quality/privacy.py): the figures are published without authentication, and one outcome must not move them.
The service computes them in a process of their own (bento/monitoring/live_compute.py) and
`readmission monitor` from a copy of the log: the same code, so the two never differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bento.quality import figures
from bento.quality.privacy import published

DAY = 86400.0
WINDOWS = {"30d": 30, "90d": 90}  # window label -> days
LABELLED_ROWS = "labelled_rows"

Figures = dict[str, float]  # metric -> value (figures.METRICS and labelled_rows)
Memo = dict[tuple[str, str], tuple[bytes, Figures]]  # (version, window) -> digest of its rows, figures


@dataclass(frozen=True)
class Labelled:
    """The labelled predictions made since some time, in the order of their ids."""

    model_version: np.ndarray  # str [N]
    time: np.ndarray  # float64 [N], when the prediction was made
    probability: np.ndarray  # float64 [N], the probability served (float32 widened exactly)
    label: np.ndarray  # int64 [N]
    outcome: np.ndarray  # int64 [N], 1 = readmitted within 30 days
    recorded: np.ndarray  # float64 [N], when the outcome was recorded: the order the figures publish rows in


@dataclass(frozen=True)
class Scored:
    """The logged probabilities made since some time, outcome or not, as the log holds them: per batch (one call of
    a model) its version, time and number of rows; per row its probability and label, the batches' rows one after
    another. Each version's batches are in the order of their ids (oldest first). A few bytes a row: a window may
    hold millions."""

    model_version: np.ndarray  # str [B]
    time: np.ndarray  # float64 [B], when the batch was scored
    rows: np.ndarray  # int64 [B]
    probability: np.ndarray  # float32 [N], N = rows.sum()
    label: np.ndarray  # uint8 [N], 1 = flagged at the version's own threshold


def measure(
    labelled: Labelled, now: float, versions: Iterable[str] = (), memo: Memo | None = None
) -> dict[str, dict[str, Figures]]:
    """The figures per model version and window (the `versions` given appear even without labelled rows).

    Published in steps: each version and window is measured over its oldest multiple of PUBLISH_ROWS rows by the
    time their outcome was recorded (bento/quality/privacy.py's `published`), and LABELLED_ROWS is that count; so
    one more outcome, about any prediction, moves nothing until it completes a step, and no difference of two
    readings describes fewer than PUBLISH_ROWS patients' outcomes.
    With a `memo` of the last call, a version and window whose rows are the same as then are not computed again;
    a window holding the same rows as the shorter one before it takes its figures.
    """
    result: dict[str, dict[str, Figures]] = {}
    for version in sorted(set(np.unique(labelled.model_version).tolist()) | set(versions), key=version_order):
        of_version = labelled.model_version == version
        result[version] = {}
        previous: tuple[int, Figures] | None = None  # the last window's row count and figures
        for window, days in sorted(WINDOWS.items(), key=lambda item: item[1]):
            window_rows = np.flatnonzero(of_version & (labelled.time >= now - days * DAY))
            count = len(window_rows)
            if previous is not None and previous[0] == count:  # windows nest: as many rows are the same rows
                result[version][window] = previous[1]
                continue
            rows = published(window_rows, labelled.recorded[window_rows])
            outcome, probability, label = labelled.outcome[rows], labelled.probability[rows], labelled.label[rows]
            digest = hashlib.blake2b(outcome.tobytes() + probability.tobytes() + label.tobytes()).digest()
            known = memo.get((version, window)) if memo is not None else None
            if known is not None and known[0] == digest:
                result[version][window], previous = known[1], (count, known[1])
                continue
            computed = {**figures.summary(outcome, probability, label), LABELLED_ROWS: len(rows)}
            result[version][window], previous = computed, (count, computed)
            if memo is not None:
                memo[(version, window)] = (digest, computed)
    return result


def version_order(version: str) -> tuple[int, str]:
    """Named versions first, then numbered ones in number order."""
    return (int(version), "") if version.isdigit() else (-1, version)
