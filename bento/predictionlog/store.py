"""The prediction log's stores: what they have in common, whichever database holds the log.

The tables, the same in every store (bento/predictionlog/sqlite.py, postgres.py):
- `prediction_batches`: one row per call of the model, its predictions as columns: the first prediction id (the
  others follow it by their counter: bento/core/ids.py), the number of rows, the time (seconds since the epoch), the
  model version, the probabilities (float32) and labels (uint8) as little-endian bytes, and the encoded rows
  (float32 bytes, row after row) only where READMISSION_PREDICTION_LOG_FEATURES opts in, erased after the retention
  period. A row of the log costs the writer a few bytes, not an insertion into an index (bench/: the log's µs a row);
- `shadow_batches`: the challenger's probabilities and labels of a served batch (READMISSION_SHADOW), keyed by the
  batch's first id and the challenger's version, written in the same transaction as the served batch;
- `outcomes`: the true outcome of a prediction (`POST /feedback`), once per prediction;
- `labelled_scores`: beside each outcome, the scores of its prediction (the served version's and each
  challenger's: version, time, probability, label), copied from its batch when the outcome is recorded, so the live
  figures read the labelled rows without opening a batch.
Predictions older than READMISSION_PREDICTION_LOG_KEEP_DAYS are erased with their outcomes and shadow rows, the
oldest batches first, whole batches of at most ERASE_ROWS rows in all per transaction (at least one batch:
`erase_predictions`), so the log stops growing and no erasure holds the write lock for long; feedback about an
erased prediction is refused as unknown. A store written by an earlier release (one `predictions` row per
prediction) is converted once when it is opened (`MIGRATION`).

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from bento.core.ids import first_id_at, last, offset_in
from bento.quality.comparison import Paired
from bento.quality.windows import Labelled, Scored

if TYPE_CHECKING:
    from bento.core.scoring import ScoredBatch

IN_CHUNK = 500  # ids per `IN (...)` query
READ_ROWS = 1000  # rows a read of many rows fetches at a time (`Read`): batches of the log, up to 1,000,000 rows
ERASE_ROWS = 5000  # predictions erased per transaction (whole batches, at least one): the lock is held for milliseconds
PROBABILITY, LABEL = np.dtype("<f4"), np.dtype("u1")  # how a batch's columns are stored
T = TypeVar("T")


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


class LoggedBatch(NamedTuple):
    """A scored batch as the log keeps it from the moment it is queued: its first prediction id and row count (the
    others follow by their counter: bento/core/ids.py), not every id; the encoded rows only where needed. (A tuple:
    built on the request path, and held a flush long, for each call of the model.)"""

    first_id: str
    rows: int
    time: float  # seconds since the epoch
    model_version: str
    probabilities: np.ndarray  # float32 [rows]
    labels: np.ndarray  # int64 [rows]
    matrix: np.ndarray  # float32 [N, COLUMNS]: every encoded row, or a sample of them where that is all that is needed

    @classmethod
    def of(cls, batch: ScoredBatch, matrix: np.ndarray | None = None) -> LoggedBatch:
        """A scored batch of at least one row as the log keeps it, with `matrix` for its encoded rows (default: all)."""
        return cls(
            batch.ids[0],
            len(batch.ids),
            batch.time,
            batch.model_version,
            batch.probabilities,
            batch.labels,
            batch.matrix if matrix is None else matrix,
        )


@dataclass(frozen=True)
class ShadowBatch:
    """The challenger's scores of one served batch."""

    first_id: str  # the served batch's first prediction id
    model_version: str  # the challenger's
    probabilities: np.ndarray  # float32 [N]
    labels: np.ndarray  # int64 [N], at the challenger's own threshold


class LogStore(Protocol):
    """What the prediction log, feedback and live performance need of a store."""

    def append(self, batches: Sequence[LoggedBatch], keep_features: bool, shadow: Sequence[ShadowBatch] = ()) -> None:
        """Add the scored batches, and the challenger's scores of them (`shadow`), in one transaction (their encoded
        rows where `keep_features`: then every one of them)."""

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> Recorded:
        """Record true outcomes in one transaction: all or none (UnknownPredictionError, ConflictingOutcomeError)."""

    def labelled(self, since: float) -> Labelled:
        """Predictions made since `since` that have an outcome: the served rows and the challenger's (shadow) rows,
        each under its model version, at the time of the prediction, with when the outcome was recorded, in the
        order of the ids."""

    def paired(self, since: float) -> Paired:
        """Predictions made since `since` that have an outcome and a challenger's score in shadow, once per
        challenger version, with when the outcome was recorded."""

    def scored(self, since: float) -> Scored:
        """Every logged probability made since `since`, outcome or not, the challenger's shadow rows too (at the
        time of their served prediction), in the order of the ids."""

    def scored_marker(self) -> str:
        """A cheap marker of the logged probabilities (the oldest and newest ids): it changes when predictions are
        added or erased (shadow rows go in and out with their prediction)."""

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`; how many were erased."""

    def erase_predictions(self, before: float, rows: int = ERASE_ROWS) -> int:
        """Erase the oldest batches made before `before`, at most `rows` predictions in all but at least one batch,
        with their outcomes and shadow rows, in one transaction; how many predictions were erased (0: none older
        is left)."""

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


def batch_rows(batches: Sequence[LoggedBatch], keep_features: bool) -> list[tuple]:
    """The `prediction_batches` rows of scored batches: (first id, rows, time, version, probabilities, labels,
    encoded rows). The columns of all batches are converted at once and cut per batch: one numpy call a batch
    would cost a single-row batch more than its row."""
    batches = [batch for batch in batches if batch.rows]
    if not batches:
        return []
    probabilities = np.concatenate([batch.probabilities for batch in batches]).astype(PROBABILITY).tobytes()
    labels = np.concatenate([batch.labels for batch in batches]).astype(LABEL).tobytes()
    rows, start = [], 0
    for batch in batches:
        end = start + batch.rows
        encoded = np.ascontiguousarray(batch.matrix, dtype=np.float32).tobytes() if keep_features else None
        rows.append(
            (
                batch.first_id,
                batch.rows,
                batch.time,
                batch.model_version,
                probabilities[start * PROBABILITY.itemsize : end * PROBABILITY.itemsize],
                labels[start:end],
                encoded,
            )
        )
        start = end
    return rows


def shadow_rows(shadow: Sequence[ShadowBatch]) -> list[tuple]:
    """The `shadow_batches` rows: (first id, version, probabilities, labels)."""
    return [
        (s.first_id, s.model_version, s.probabilities.astype(PROBABILITY).tobytes(), s.labels.astype(LABEL).tobytes())
        for s in shadow
    ]


LabelledScore = tuple[str, str, float, float, int, int]  # id, version, time, probability, label, 1 = served


def scores_of(ids: list[str], candidates: dict[str, tuple], shadows: list[tuple]) -> dict[str, list[LabelledScore]]:
    """The `labelled_scores` rows of each of `ids` the log holds (the served version's first), from the batch that
    may hold each id (`candidates`: id -> FIND_BATCH row) and the challengers' scores of those batches (`shadows`:
    SHADOWS_OF rows)."""
    challengers: dict[str, list[tuple]] = {}
    for first_id, version, probabilities, labels in sorted(shadows, key=lambda row: (row[0], row[1])):
        challengers.setdefault(first_id, []).append((version, probabilities, labels))
    columns: dict[str, list[tuple]] = {}  # first id -> each version's decoded columns
    found: dict[str, list[LabelledScore]] = {}
    for prediction_id, (first_id, count, when, version, probabilities, labels) in candidates.items():
        offset = offset_in(first_id, count, prediction_id)
        if offset is None:
            continue
        if first_id not in columns:
            scored = [(version, probabilities, labels), *challengers.get(first_id, [])]
            columns[first_id] = [(v, np.frombuffer(p, PROBABILITY), np.frombuffer(f, LABEL)) for v, p, f in scored]
        found[prediction_id] = [
            (prediction_id, v, when, float(p[offset]), int(f[offset]), int(n == 0))
            for n, (v, p, f) in enumerate(columns[first_id])
        ]
    return found


def within(oldest: list[tuple[str, int]], rows: int) -> list[tuple[str, int]]:
    """The oldest batches (first id, rows) to erase at once: as many as hold at most `rows` predictions in all, at
    least one."""
    taken, total = [], 0
    for first_id, count in oldest:
        if taken and total + count > rows:
            break
        taken.append((first_id, count))
        total += count
    return taken


def id_range(first_id: str, count: int) -> tuple[str, str]:
    """The first and last id of a batch: the ids of its outcomes and scores lie between (bento/core/ids.py)."""
    return first_id, last(first_id, count)


def _packed(probability: float, label: int) -> tuple[bytes, bytes]:
    return np.float32(probability).astype(PROBABILITY).tobytes(), np.array([label], LABEL).tobytes()


def migrated_batches(rows: list[tuple]) -> list[tuple]:
    """`prediction_batches` rows, one batch each, of an earlier release's OLD_PREDICTIONS rows."""
    return [
        (i, 1, when, version, *_packed(probability, label), None if encoded is None else bytes(encoded))
        for i, when, version, probability, label, encoded in rows
    ]


def migrated_shadows(rows: list[tuple]) -> list[tuple]:
    """`shadow_batches` rows, one batch each, of an earlier release's OLD_SHADOWS rows."""
    return [(i, version, *_packed(probability, label)) for i, version, probability, label in rows]


# The queries both stores run; `{}` is the driver's parameter marker ("?" for sqlite3, "%s" for psycopg).
INSERT_OUTCOME = "INSERT INTO outcomes VALUES ({0}, {0}, {0}) ON CONFLICT (prediction_id) DO NOTHING"
INSERT_SCORES = (
    "INSERT INTO labelled_scores VALUES ({0}, {0}, {0}, {0}, {0}, {0}) "
    "ON CONFLICT (prediction_id, model_version) DO NOTHING"
)
# The batch that may hold an id: the one with the greatest first id at or below it (ids of one batch share all but
# their counter, so no other batch's first id lies between: bento/core/ids.py).
FIND_BATCH = (
    "SELECT first_id, rows, time, model_version, probabilities, labels FROM prediction_batches "
    "WHERE first_id <= {0} ORDER BY first_id DESC LIMIT 1"
)
SHADOWS_OF = "SELECT first_id, model_version, probabilities, labels FROM shadow_batches WHERE first_id IN ({0})"
# The served rows and the challengers', in the order of the ids, with when each outcome was recorded (the figures
# publish the oldest rows by that time: bento/quality/privacy.py); the parameters: the first id at `since` (the
# primary key's range), then `since` itself (the exact time).
LABELLED_SINCE = (
    "SELECT l.model_version, l.time, l.probability, l.label, o.readmitted, o.time "
    "FROM labelled_scores l JOIN outcomes o ON o.prediction_id = l.prediction_id "
    "WHERE l.prediction_id >= {0} AND l.time >= {0} ORDER BY l.prediction_id, l.model_version"
)
PAIRED_SINCE = (
    "SELECT c.model_version, s.model_version, c.time, c.probability, s.probability, o.readmitted, o.time "
    "FROM labelled_scores c JOIN labelled_scores s ON s.prediction_id = c.prediction_id AND s.served = 0 "
    "JOIN outcomes o ON o.prediction_id = c.prediction_id "
    "WHERE c.served = 1 AND c.prediction_id >= {0} AND c.time >= {0} ORDER BY c.prediction_id, s.model_version"
)
# Every logged probability from the first id at `since` (the ids sort by time, bento/core/ids.py): the served batches
# and the challengers' (at the time of the served batch), merged in the order of the first ids (a batch's challengers
# beside it in any order: each is another version). Both tables' primary keys lead with the first id, so the database
# merges two index scans and sorts nothing. The parameters: the first id at `since`, twice.
SCORED_SINCE = (
    "SELECT first_id, model_version, time, rows, probabilities, labels FROM prediction_batches WHERE first_id >= {0} "
    "UNION ALL SELECT s.first_id, s.model_version, p.time, p.rows, s.probabilities, s.labels FROM shadow_batches s "
    "JOIN prediction_batches p ON p.first_id = s.first_id WHERE s.first_id >= {0} ORDER BY 1"
)
# An earlier release's store, converted once: its rows read in chunks, then the labelled rows' scores copied, then
# its two tables dropped, in one transaction.
OLD_TABLES = ("predictions", "shadow_predictions")
OLD_PREDICTIONS = "SELECT id, time, model_version, probability, label, features FROM predictions ORDER BY id"
OLD_SHADOWS = "SELECT prediction_id, model_version, probability, label FROM shadow_predictions"
MIGRATION = (
    "INSERT INTO labelled_scores SELECT o.prediction_id, p.model_version, p.time, p.probability, p.label, 1 "
    "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id",
    "INSERT INTO labelled_scores SELECT s.prediction_id, s.model_version, p.time, s.probability, s.label, 0 "
    "FROM outcomes o JOIN predictions p ON p.id = o.prediction_id "
    "JOIN shadow_predictions s ON s.prediction_id = o.prediction_id",
    "DROP TABLE shadow_predictions",
    "DROP TABLE predictions",
)
MIGRATE_CHUNK = 10_000  # old rows converted at a time
# What goes with an erased batch: the rows of these tables whose key lies in its id_range.
ERASED = (("outcomes", "prediction_id"), ("labelled_scores", "prediction_id"), ("shadow_batches", "first_id"))
LABELLED_MARKER = "SELECT COUNT(*), COALESCE(MAX(time), 0) FROM outcomes"
# Two look-ups of the primary key (one MIN and one MAX per query: SQLite finds those from the index alone). Erasing
# moves the oldest id, adding the newest; a batch written late with ids below the newest is seen with the next one.
SCORED_MARKER = "SELECT (SELECT MIN(first_id) FROM prediction_batches), (SELECT MAX(first_id) FROM prediction_batches)"
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


Column = Callable[[tuple], np.ndarray]  # one column of fetched rows, as numpy


def values(dtype: type) -> Column:
    """A column of values, as an array of `dtype`."""
    return lambda column: np.array(column, dtype=dtype)


def packed(dtype: np.dtype) -> Column:
    """A column of byte strings, each an array of `dtype`, as one array: their items one after another."""
    return lambda column: np.frombuffer(b"".join(column), dtype)


@dataclass(frozen=True)
class Read(Generic[T]):
    """A read of many rows: its query (placeholders `{0}`), how each of its columns becomes numpy (None: left out,
    fetched for the order alone) and what the columns make."""

    query: str
    columns: tuple[Column | None, ...]
    made: Callable[..., T]
    exact: bool = True  # its parameters: the first id at `since`, then `since` (True) or that first id again

    def parameters(self, since: float) -> tuple[str, str | float]:
        """The query's parameters for the rows made since `since`."""
        first = first_id_at(since)
        return (first, since if self.exact else first)

    def of(self, cursor: Rows) -> T:
        """What the rest of `cursor`'s rows make, fetched READ_ROWS at a time: each chunk's Python objects become
        numpy columns before the next is fetched, so a read of millions of rows never holds them all as objects."""
        chunks = [
            self._converted(list(zip(*rows, strict=True))) for rows in iter(lambda: cursor.fetchmany(READ_ROWS), [])
        ]
        return self.made(*map(np.concatenate, zip(*chunks, strict=True))) if chunks else self.made(*self._converted())

    def _converted(self, columns: list[tuple] | None = None) -> list[np.ndarray]:
        """Fetched columns (None: none fetched) as numpy, those left out dropped."""
        columns = columns or [()] * len(self.columns)
        return [convert(column) for convert, column in zip(self.columns, columns, strict=True) if convert]


class Rows(Protocol):
    """What a read needs of a database cursor (sqlite3's and psycopg's)."""

    def fetchmany(self, size: int) -> list[Any]:
        """At most `size` more rows; none once every row was fetched."""


TEXT, REAL, INTEGER = values(str), values(np.float64), values(np.int64)
LABELLED = Read(LABELLED_SINCE, (TEXT, REAL, REAL, INTEGER, INTEGER, REAL), Labelled)
PAIRED = Read(PAIRED_SINCE, (TEXT, TEXT, REAL, REAL, REAL, INTEGER, REAL), Paired)
SCORED = Read(SCORED_SINCE, (None, TEXT, REAL, INTEGER, packed(PROBABILITY), packed(LABEL)), Scored, exact=False)
