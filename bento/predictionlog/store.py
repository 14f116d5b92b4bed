"""The prediction log's stores: what they have in common, whichever database holds the log.

Two tables, the same in every store (bento/predictionlog/sqlite.py, postgres.py):
- `predictions`: id, time (seconds since the epoch), model version, probability, label, and the encoded row
  (float32 bytes) only where READMISSION_PREDICTION_LOG_FEATURES opts in, erased after the retention period;
- `outcomes`: the true outcome of a prediction (`POST /feedback`), once per prediction.

Every write is one short transaction, so a process killed in the middle leaves the store as it was before the
write, and the writer of the log never waits long for feedback: feedback reads which ids are known and which
outcomes are recorded first, without a write lock (predictions are never deleted, so a known id stays known),
and then inserts the new outcomes in one statement that skips those recorded meanwhile, checked in the same
transaction, so two calls never record two outcomes for one prediction.
Store failures (locked, disk full, connection lost) raise StoreError (StoreBusyError while another connection
holds the lock); the caller retries or counts what was lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bento.quality.windows import Labelled

if TYPE_CHECKING:
    from bento.core.scoring import ScoredBatch

IN_CHUNK = 500  # ids per `IN (...)` query


class StoreError(RuntimeError):
    """The store cannot be read or written now (locked, full, unreachable)."""


class StoreBusyError(StoreError):
    """Another connection held the store's lock longer than a write waits: worth trying again soon."""


class UnknownPredictionError(LookupError):
    """Feedback names prediction ids the log does not hold."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} unknown prediction ids")
        self.ids = ids


class ConflictingOutcomeError(ValueError):
    """Feedback gives an outcome other than the one already recorded for a prediction."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} predictions already have another outcome")
        self.ids = ids


@dataclass(frozen=True)
class Recorded:
    """What one feedback call changed."""

    recorded: int  # new outcomes
    unchanged: int  # outcomes sent again with the same value


class LogStore(Protocol):
    """What the prediction log, feedback and live performance need of a store."""

    def append(self, batches: Sequence[ScoredBatch], keep_features: bool) -> None:
        """Add the scored rows in one transaction."""

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> Recorded:
        """Record true outcomes in one transaction: all or none (UnknownPredictionError, ConflictingOutcomeError)."""

    def labelled(self, since: float) -> Labelled:
        """Predictions made since `since` that have an outcome."""

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`; how many were erased."""

    def close(self) -> None:
        """Release connections."""


def rows_of(batches: Sequence[ScoredBatch], keep_features: bool) -> list[tuple]:
    """The `predictions` rows of scored batches: (id, time, version, probability, label, features)."""
    rows = []
    for batch in batches:
        encoded = [row.tobytes() for row in batch.matrix] if keep_features else [None] * len(batch.ids)
        rows.extend(
            zip(
                batch.ids,
                [batch.time] * len(batch.ids),
                [batch.model_version] * len(batch.ids),
                batch.probabilities.astype(np.float64).tolist(),
                batch.labels.tolist(),
                encoded,
                strict=True,
            )
        )
    return rows


# The queries both stores run; `{}` is the driver's parameter marker ("?" for sqlite3, "%s" for psycopg).
INSERT_OUTCOME = "INSERT INTO outcomes VALUES ({0}, {0}, {0}) ON CONFLICT (prediction_id) DO NOTHING"
LABELLED_SINCE = (
    "SELECT p.id, p.model_version, p.time, p.probability, p.label, o.readmitted "
    "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id WHERE p.time >= {0}"
)


def new_outcomes(outcomes: dict[str, int], recorded: dict[str, int], now: float) -> list[tuple[str, int, float]]:
    """The `outcomes` rows to insert: those not recorded yet, in the order of their ids, so that calls inserting
    some of the same ids at once lock them in the same order (no deadlock in PostgreSQL)."""
    return sorted((i, outcome, now) for i, outcome in outcomes.items() if i not in recorded)


def check_outcomes(outcomes: dict[str, int], known: set[str], recorded: dict[str, int]) -> None:
    """Raise for unknown ids (UnknownPredictionError) or changed outcomes (ConflictingOutcomeError)."""
    unknown = [prediction_id for prediction_id in outcomes if prediction_id not in known]
    if unknown:
        raise UnknownPredictionError(unknown)
    changed = [i for i, outcome in outcomes.items() if i in recorded and recorded[i] != outcome]
    if changed:
        raise ConflictingOutcomeError(changed)


def recorded_after_insert(
    outcomes: dict[str, int], inserted: int, rows: list[tuple], recorded: dict[str, int]
) -> Recorded:
    """What a call recorded, once `inserted` of its new `rows` were inserted and the rest skipped because another
    call recorded them in between; `recorded` then holds those ids' outcomes as stored (read in the inserting
    transaction): a different one raises ConflictingOutcomeError, so the transaction rolls back."""
    changed = [i for i, _, _ in rows if recorded.get(i, outcomes[i]) != outcomes[i]]
    if changed:
        raise ConflictingOutcomeError(changed)
    return Recorded(recorded=inserted, unchanged=len(outcomes) - inserted)


def chunks(ids: list[str]) -> list[list[str]]:
    """`ids` in slices small enough for one `IN (...)` query."""
    return [ids[start : start + IN_CHUNK] for start in range(0, len(ids), IN_CHUNK)]


def labelled_of(rows: list[tuple]) -> Labelled:
    """Labelled from (id, version, time, probability, label, outcome) rows."""
    rows.sort(key=lambda row: row[0])
    if not rows:
        empty = np.zeros(0)
        return Labelled(np.zeros(0, dtype=str), empty, empty, empty.astype(np.int64), empty.astype(np.int64))
    _, versions, times, probabilities, labels, outcomes = zip(*rows, strict=True)
    return Labelled(
        np.array(versions, dtype=str),
        np.array(times, dtype=np.float64),
        np.array(probabilities, dtype=np.float64),
        np.array(labels, dtype=np.int64),
        np.array(outcomes, dtype=np.int64),
    )
