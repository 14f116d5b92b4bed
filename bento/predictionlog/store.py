"""The prediction log's stores: what they have in common, whichever database holds the log.

Three tables, the same in every store (bento/predictionlog/sqlite.py, postgres.py):
- `predictions`: id, time (seconds since the epoch), model version, probability, label, and the encoded row
  (float32 bytes) only where READMISSION_PREDICTION_LOG_FEATURES opts in, erased after the retention period;
- `outcomes`: the true outcome of a prediction (`POST /feedback`), once per prediction;
- `shadow_predictions`: the challenger's probability and label of a served prediction (READMISSION_SHADOW), keyed
  by the prediction's id and the challenger's version, written in the same transaction as the served row.
Predictions older than READMISSION_PREDICTION_LOG_KEEP_DAYS are erased with their outcomes and shadow rows, the
oldest first, at most ERASE_ROWS per transaction (`erase_predictions`), so the log stops growing and no erasure
holds the write lock for long; feedback about an erased prediction is refused as unknown.

Every write is one short transaction, so a process killed in the middle leaves the store as it was before the
write, and the writer of the log never waits long for feedback: feedback reads which ids are known and which
outcomes are recorded first, without a write lock (only predictions past the keeping period are ever deleted, so a
known id stays known while its outcome can matter), and then inserts the new outcomes in one statement that skips
those recorded meanwhile, checked in the same transaction, so two calls never record two outcomes for one
prediction.
Two small tables let one worker of a deployment compute the live figures for all (bento/monitoring/
live_performance.py): `monitor_lease`, one row naming the worker that holds the lease and until when (taken in one
upsert that succeeds only for the holder or once the lease has expired, so two workers, pods included, never both
hold it), and `monitor_figures`, what it computed last (JSON) with the change markers of the labelled and the scored
rows it was computed from, in three rows written together: `monitor` (version -> window -> figures: the row an older
release reads), `comparison` (champion and challenger on the same patients: bento/quality/comparison.py) and
`estimated` (performance estimated before outcomes: bento/quality/estimates.py).
Store failures (locked, disk full, connection lost) raise StoreError (StoreBusyError while another connection
holds the lock); the caller retries or counts what was lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bento.quality.comparison import Paired
from bento.quality.windows import Labelled, Scored

if TYPE_CHECKING:
    from bento.core.scoring import ScoredBatch

IN_CHUNK = 500  # ids per `IN (...)` query
ERASE_ROWS = 5000  # predictions erased per transaction: the write lock is held for milliseconds


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
class StoredFigures:
    """What the lease holder computed last, as every worker serves it."""

    computed_at: float  # seconds since the epoch
    marker: str  # the labelled and the scored rows' change markers when they were computed
    figures: str  # JSON: version -> window -> metric -> value (the live figures)
    comparison: str  # JSON: [{champion_version, challenger_version, windows: window -> metric -> value}]
    estimated: str  # JSON: version -> window -> estimate -> value


@dataclass(frozen=True)
class Recorded:
    """What one feedback call changed."""

    recorded: int  # new outcomes
    unchanged: int  # outcomes sent again with the same value


ShadowRow = tuple[str, str, float, int]  # a `shadow_predictions` row: prediction id, version, probability, label


class LogStore(Protocol):
    """What the prediction log, feedback and live performance need of a store."""

    def append(self, batches: Sequence[ScoredBatch], keep_features: bool, shadow: Sequence[ShadowRow] = ()) -> None:
        """Add the scored rows, and the challenger's rows of them (`shadow`), in one transaction."""

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> Recorded:
        """Record true outcomes in one transaction: all or none (UnknownPredictionError, ConflictingOutcomeError)."""

    def labelled(self, since: float) -> Labelled:
        """Predictions made since `since` that have an outcome: the served rows and the challenger's (shadow) rows,
        each under its model version, at the time of the prediction, in the order of the ids."""

    def paired(self, since: float) -> Paired:
        """Predictions made since `since` that have an outcome and a challenger's score in shadow, once per
        challenger version."""

    def scored(self, since: float) -> Scored:
        """Every logged probability made since `since`, outcome or not, the challenger's shadow rows too (at the
        time of their served prediction), in the order of the ids."""

    def scored_marker(self) -> str:
        """A cheap marker of the logged probabilities (the oldest and newest ids): it changes when predictions are
        added or erased (shadow rows go in and out with their prediction)."""

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`; how many were erased."""

    def erase_predictions(self, before: float, rows: int = ERASE_ROWS) -> int:
        """Erase at most `rows` of the oldest predictions made before `before`, their outcomes and their shadow
        rows, in one transaction; how many predictions were erased (fewer than `rows`: none older is left)."""

    def labelled_marker(self) -> str:
        """A cheap marker of the labelled rows (the outcomes' count and latest time): it changes when outcomes
        are recorded or erased."""

    def take_lease(self, holder: str, now: float, seconds: float) -> bool:
        """Take or renew the monitor's lease until `now + seconds`: True for `holder` when it holds it or the
        lease expired (or was released), False while another holder's lease runs."""

    def release_lease(self, holder: str) -> None:
        """Give the lease up if `holder` holds it, so another worker takes it at once."""

    def save_figures(self, stored: StoredFigures) -> None:
        """Replace the stored live figures."""

    def stored_figures(self) -> StoredFigures | None:
        """The stored live figures, None before the first computation."""

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
    "SELECT p.model_version, p.time, p.probability, p.label, o.readmitted, o.prediction_id "
    "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id WHERE p.time >= {0} "
    "UNION ALL "
    "SELECT s.model_version, p.time, s.probability, s.label, o.readmitted, o.prediction_id "
    "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id "
    "JOIN shadow_predictions s ON s.prediction_id = o.prediction_id WHERE p.time >= {0} "
    "ORDER BY 6"
)  # the served rows and the challenger's, in the order of the ids: SQLite merges the two walks of the outcomes'
# primary key, PostgreSQL sorts (in the database, not here). Its parameter twice: the time since.
PAIRED_SINCE = (
    "SELECT p.model_version, s.model_version, p.time, p.probability, s.probability, o.readmitted "
    "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id "
    "JOIN shadow_predictions s ON s.prediction_id = o.prediction_id "
    "WHERE p.time >= {0} ORDER BY o.prediction_id, s.model_version"
)
# The served rows and the challenger's (at the time of the served prediction), from the first id at `since` (the ids
# sort by time, bento/core/ids.py: both tables' primary keys lead with the id), in the order of the ids.
SCORED_SINCE = (
    "SELECT model_version, time, probability, label FROM ("
    "SELECT id, model_version, time, probability, label FROM predictions WHERE id >= {0} UNION ALL "
    "SELECT s.prediction_id, s.model_version, p.time, s.probability, s.label FROM shadow_predictions s "
    "JOIN predictions p ON p.id = s.prediction_id WHERE s.prediction_id >= {0}"
    ") AS scored ORDER BY id, model_version"
)
LABELLED_MARKER = "SELECT COUNT(*), COALESCE(MAX(time), 0) FROM outcomes"
# Two look-ups of the primary key (one MIN and one MAX per query: SQLite finds those from the index alone). Erasing
# moves the oldest id, adding the newest; a batch written late with ids below the newest is seen with the next one.
SCORED_MARKER = "SELECT (SELECT MIN(id) FROM predictions), (SELECT MAX(id) FROM predictions)"
LEASE = "monitor"  # the one lease's name
TAKE_LEASE = (
    "INSERT INTO monitor_lease (name, holder, expires) VALUES ({0}, {0}, {0}) ON CONFLICT (name) DO UPDATE "
    "SET holder = excluded.holder, expires = excluded.expires "
    "WHERE monitor_lease.holder = excluded.holder OR monitor_lease.expires < {0}"
)
RELEASE_LEASE = "UPDATE monitor_lease SET expires = 0 WHERE name = {0} AND holder = {0}"
SAVE_FIGURES = (
    "INSERT INTO monitor_figures (name, computed_at, marker, figures) VALUES ({0}, {0}, {0}, {0}) "
    "ON CONFLICT (name) DO UPDATE SET computed_at = excluded.computed_at, marker = excluded.marker, "
    "figures = excluded.figures"
)
STORED_FIGURES = "SELECT name, computed_at, marker, figures FROM monitor_figures"
# The rows beside LEASE's in monitor_figures (an older release reads LEASE's only), and what each reads as when the
# holder that wrote LEASE's row wrote none (an older release) or another computation's.
BESIDE_FIGURES = {"comparison": "[]", "estimated": "{}"}


def figure_rows(stored: StoredFigures) -> list[tuple]:
    """The monitor_figures rows of `stored`, written together by SAVE_FIGURES."""
    values = {LEASE: stored.figures, "comparison": stored.comparison, "estimated": stored.estimated}
    return [(name, stored.computed_at, stored.marker, value) for name, value in values.items()]


def stored_of(rows: list[tuple]) -> StoredFigures | None:
    """StoredFigures from the STORED_FIGURES rows; None before the first computation."""
    found = {name: (computed_at, marker, figures) for name, computed_at, marker, figures in rows}
    if LEASE not in found:
        return None
    computed_at, marker, figures = found[LEASE]
    beside = {
        name: found[name][2] if name in found and found[name][0] == computed_at else empty
        for name, empty in BESIDE_FIGURES.items()
    }
    return StoredFigures(computed_at, marker, figures, **beside)


def marker_of(row: tuple) -> str:
    """The change marker of a LABELLED_MARKER row."""
    count, latest = row
    return f"{int(count)}:{float(latest)!r}"


def scored_marker_of(row: tuple) -> str:
    """The change marker of a SCORED_MARKER row."""
    oldest, newest = row
    return f"{oldest or ''}:{newest or ''}"


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


def paired_of(rows: list[tuple]) -> Paired:
    """Paired from PAIRED_SINCE rows (champion version, challenger version, time, both probabilities, outcome)."""
    columns = list(zip(*rows, strict=True)) or [()] * 6
    return Paired(
        np.array(columns[0], dtype=str),
        np.array(columns[1], dtype=str),
        np.array(columns[2], dtype=np.float64),
        np.array(columns[3], dtype=np.float64),
        np.array(columns[4], dtype=np.float64),
        np.array(columns[5], dtype=np.int64),
    )


def scored_of(rows: list[tuple]) -> Scored:
    """Scored from (version, time, probability, label) rows, in the order of their ids."""
    if not rows:
        empty = np.zeros(0)
        return Scored(np.zeros(0, dtype=str), empty, empty, empty.astype(np.int64))
    versions, times, probabilities, labels = zip(*rows, strict=True)
    return Scored(
        np.array(versions, dtype=str),
        np.array(times, dtype=np.float64),
        np.array(probabilities, dtype=np.float64),
        np.array(labels, dtype=np.int64),
    )


def labelled_of(rows: list[tuple]) -> Labelled:
    """Labelled from LABELLED_SINCE rows (version, time, probability, label, outcome, id), in the order of their
    ids."""
    if not rows:
        empty = np.zeros(0)
        return Labelled(np.zeros(0, dtype=str), empty, empty, empty.astype(np.int64), empty.astype(np.int64))
    versions, times, probabilities, labels, outcomes, _ = zip(*rows, strict=True)
    return Labelled(
        np.array(versions, dtype=str),
        np.array(times, dtype=np.float64),
        np.array(probabilities, dtype=np.float64),
        np.array(labels, dtype=np.int64),
        np.array(outcomes, dtype=np.int64),
    )
