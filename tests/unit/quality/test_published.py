"""The realised figures (bento/quality/windows.py) and the champion/challenger comparison (comparison.py) published
in steps (bento/quality/privacy.py), read from a real SQLite log: outcomes recorded one at a time, for predictions old
and new in random order, move no published figure until one completes a step of PUBLISH_ROWS in its window, and that
one moves them to the oldest multiple of PUBLISH_ROWS rows by the time recorded (checked against scikit-learn)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from bento.core.ids import PredictionIds
from bento.core.scoring import ScoredBatch
from bento.predictionlog.sqlite import SQLiteStore
from bento.predictionlog.store import ShadowBatch
from bento.quality import comparison
from bento.quality.privacy import PUBLISH_ROWS
from bento.quality.windows import DAY, WINDOWS, measure
from tests.helpers import queued

DAYS_AGO = (80, 50, 20, 1)  # a batch of PUBLISH_ROWS predictions each: the first two in the 90-day window only
ROWS = PUBLISH_ROWS * len(DAYS_AGO)


def _logged(store: SQLiteStore, now: float) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predictions of version 5, each scored by version 6 in shadow: their ids, days ago, both probabilities and
    outcomes to come."""
    rng, ids = np.random.default_rng(7), PredictionIds()
    outcome = (rng.random(ROWS) < 0.4).astype(np.int64)
    served = np.clip(0.3 + 0.25 * outcome + rng.normal(0, 0.2, ROWS), 0.01, 0.99).astype(np.float32)
    challenger = np.clip(0.3 + 0.35 * outcome + rng.normal(0, 0.2, ROWS), 0.01, 0.99).astype(np.float32)
    names: list[str] = []
    for n, days in enumerate(DAYS_AGO):
        part, when = slice(n * PUBLISH_ROWS, (n + 1) * PUBLISH_ROWS), now - days * DAY
        batch = ScoredBatch(ids.take(PUBLISH_ROWS, when), when, "5", served[part], (served[part] >= 0.5).astype(int),
                            np.zeros((PUBLISH_ROWS, 1), dtype=np.float32))  # fmt: skip
        shadow = ShadowBatch(batch.ids[0], "6", challenger[part], (challenger[part] >= 0.5).astype(int))
        store.append(queued(batch), keep_features=False, shadow=[shadow])
        names += batch.ids
    days_ago = np.repeat(np.array(DAYS_AGO, dtype=np.float64), PUBLISH_ROWS)
    return names, days_ago, served.astype(np.float64), challenger.astype(np.float64), outcome


def test_one_more_outcome_moves_no_published_figure_until_it_completes_a_step(tmp_path):
    now = time.time()
    store = SQLiteStore(tmp_path / "log.db")
    ids, days_ago, served, challenger, outcome = _logged(store, now)
    order = np.random.default_rng(8).permutation(ROWS)
    first = np.sort(order[: 2 * PUBLISH_ROWS])  # recorded in one call at one time: ties go by id
    rest = [n for n in order[2 * PUBLISH_ROWS :] if days_ago[n] != 80]
    rest.insert(0, next(n for n in order[2 * PUBLISH_ROWS :] if days_ago[n] == 80))  # an old prediction's first
    rest += [n for n in order[2 * PUBLISH_ROWS :] if days_ago[n] == 80 and n != rest[0]]
    store.record_outcomes({ids[n]: int(outcome[n]) for n in first}, now)
    recorded = list(first)  # the predictions in the order of their outcomes
    since = now - max(WINDOWS.values()) * DAY

    def published() -> tuple[dict, dict]:
        live = measure(store.labelled(since), now)
        [pair] = comparison.measure(store.paired(since), now)
        assert (pair["champion_version"], pair["challenger_version"]) == ("5", "6")
        return live, pair["windows"]

    def expected(window: str) -> np.ndarray:
        """The oldest multiple of PUBLISH_ROWS of the window's labelled predictions, by the order recorded."""
        within = [n for n in recorded if days_ago[n] <= WINDOWS[window]]
        return np.array(within[: len(within) // PUBLISH_ROWS * PUBLISH_ROWS], dtype=np.int64)

    shown, moves = published(), 0
    for step, n in enumerate(rest, start=1):
        store.record_outcomes({ids[n]: int(outcome[n])}, now + step)
        recorded.append(n)
        live, compared = published()
        for window, days in WINDOWS.items():
            labelled = sum(days_ago[m] <= days for m in recorded)
            completes = days_ago[n] <= days and labelled % PUBLISH_ROWS == 0
            figures = (live["5"][window], live["6"][window], compared[window])
            before = (shown[0]["5"][window], shown[0]["6"][window], shown[1][window])
            if not completes:
                assert figures == before, f"outcome {step} (prediction {days_ago[n]:g} days old) moved {window}"
                continue
            moves += 1
            rows = expected(window)
            assert len(rows) == labelled and all(f != b for f, b in zip(figures, before, strict=True))
            assert live["5"][window]["labelled_rows"] == live["6"][window]["labelled_rows"] == labelled
            assert compared[window]["rows"] == labelled
            assert live["5"][window]["roc_auc"] == pytest.approx(roc_auc_score(outcome[rows], served[rows]), abs=1e-9)
            assert live["6"][window]["brier"] == pytest.approx(
                brier_score_loss(outcome[rows], challenger[rows]), abs=1e-9
            )
            assert compared[window]["challenger_roc_auc"] == pytest.approx(
                roc_auc_score(outcome[rows], challenger[rows]), abs=1e-9
            )
        shown = (live, compared)
    assert moves >= 3, "the steps were completed in both windows"  # 90d at 60 and 80 outcomes, 30d at least once
    store.close()
