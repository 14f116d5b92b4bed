"""Where the prediction log lives: SQLite in WAL mode (the embedded default) or PostgreSQL (by URL).

Two tables, the same in both stores:
- `predictions`: id, time (seconds since the epoch), model version, probability, label, and the encoded row
  (float32 bytes) only where READMISSION_PREDICTION_LOG_FEATURES opts in, erased after the retention period;
- `outcomes`: the true outcome of a prediction (`POST /feedback`), once per prediction.

Every write is one short transaction, so a process killed in the middle leaves the store as it was before the
write, and the writer of the log never waits long for feedback: feedback reads which ids are known and which
outcomes are recorded first, without a write lock (predictions are never deleted, so a known id stays known),
and then inserts the new outcomes in one statement that skips those recorded meanwhile, checked in the same
transaction, so two calls never record two outcomes for one prediction. The SQLite file, and the folder it
creates for it, are readable by the service's user only.
Store failures (locked, disk full, connection lost) raise StoreError (StoreBusyError while another connection
holds the lock); the caller retries or counts what was lost.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from bento.prediction_log import ScoredBatch

SQLITE_FILE = "predictions.db"
OFF = "off"
IN_CHUNK = 500  # ids per `IN (...)` query
T = TypeVar("T")
BUSY_MILLISECONDS = 2000  # how long a write waits for a lock another connection holds before it fails


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


@dataclass(frozen=True)
class Labelled:
    """The labelled predictions made since some time, in the order of their ids."""

    model_version: np.ndarray  # str [N]
    time: np.ndarray  # float64 [N], when the prediction was made
    probability: np.ndarray  # float64 [N], the probability served (float32 widened exactly)
    label: np.ndarray  # int64 [N]
    outcome: np.ndarray  # int64 [N], 1 = readmitted within 30 days


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


def open_store(location: str, home: Path) -> LogStore | None:
    """The store READMISSION_PREDICTION_LOG names: empty for SQLite under `home`, a postgresql:// URL, a SQLite
    path (or sqlite:///path), or "off" for no log."""
    if location == OFF:
        return None
    if location.startswith(("postgresql://", "postgres://")):
        from bento.log_store_postgres import PostgresStore

        return PostgresStore(location)
    path = Path(location.removeprefix("sqlite:///")) if location else home / SQLITE_FILE
    return SQLiteStore(path)


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


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    model_version TEXT NOT NULL,
    probability REAL NOT NULL,
    label INTEGER NOT NULL,
    features BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_with_features ON predictions (time) WHERE features IS NOT NULL;
CREATE TABLE IF NOT EXISTS outcomes (
    prediction_id TEXT PRIMARY KEY,
    readmitted INTEGER NOT NULL,
    time REAL NOT NULL
) WITHOUT ROWID;
"""


def _marks(part: list[str]) -> str:
    """The `?` markers of an `IN (...)` over `part`."""
    return ",".join("?" * len(part))


def _recorded(connection: sqlite3.Connection, ids: list[str]) -> dict[str, int]:
    """The outcomes recorded for `ids`."""
    recorded: dict[str, int] = {}
    for part in chunks(ids):
        query = f"SELECT prediction_id, readmitted FROM outcomes WHERE prediction_id IN ({_marks(part)})"
        recorded.update(connection.execute(query, part))
    return recorded


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, a connection per thread, writers serialised by SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema created) on first use: a store that cannot be
        opened now fails each write, counted, and is opened once it can be."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            new = self._create_folder()
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                if new:  # before the WAL and shared-memory files exist: SQLite gives them the database file's mode
                    self.path.chmod(0o600)
                connection.execute(f"PRAGMA busy_timeout = {BUSY_MILLISECONDS}")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives a killed process
                connection.executescript(SQLITE_SCHEMA)
            except (sqlite3.Error, OSError) as error:
                connection.close()
                if isinstance(error, OSError):
                    raise sqlite3.OperationalError(f"cannot protect {self.path}: {error.strerror}") from error
                raise
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _create_folder(self) -> bool:
        """Create the folder (0700) where it does not exist; whether the database file is yet to be created.
        (Never an open() of the file here: closing it would drop the locks SQLite holds on it in this process.)"""
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise sqlite3.OperationalError(f"cannot create {self.path.parent}: {error.strerror}") from error
        return not self.path.exists()

    def _transaction(self, work: Callable[[sqlite3.Connection], T], immediate: bool = True) -> T:
        """`work` in one transaction: IMMEDIATE takes the write lock at once (waiting at most BUSY_MILLISECONDS),
        a deferred one only reads and never blocks the writer (WAL)."""
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                result = work(connection)
                connection.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            return result
        except sqlite3.Error as error:
            busy = getattr(error, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            raise (StoreBusyError if busy else StoreError)(f"SQLite {self.path.name}: {error}") from error

    def append(self, batches: Sequence[ScoredBatch], keep_features: bool) -> None:
        """Add the scored rows in one transaction."""
        rows = rows_of(batches, keep_features)
        self._transaction(lambda c: c.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows))

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> Recorded:
        """Record true outcomes: all or none. Looked up first without the write lock, then inserted in one
        short transaction."""

        def read(connection: sqlite3.Connection) -> tuple[set[str], dict[str, int]]:
            known: set[str] = set()
            for part in chunks(list(outcomes)):
                found = connection.execute(f"SELECT id FROM predictions WHERE id IN ({_marks(part)})", part)
                known.update(prediction_id for (prediction_id,) in found)
            return known, _recorded(connection, list(outcomes))

        known, recorded = self._transaction(read, immediate=False)
        check_outcomes(outcomes, known, recorded)
        rows = new_outcomes(outcomes, recorded, now)
        if not rows:
            return Recorded(recorded=0, unchanged=len(outcomes))

        def write(connection: sqlite3.Connection) -> Recorded:
            inserted = connection.executemany(INSERT_OUTCOME.format("?"), rows).rowcount
            raced = {} if inserted == len(rows) else _recorded(connection, [i for i, _, _ in rows])
            return recorded_after_insert(outcomes, inserted, rows, raced)

        return self._transaction(write)

    def labelled(self, since: float) -> Labelled:
        """Predictions made since `since` that have an outcome."""
        query = LABELLED_SINCE.format("?")
        return labelled_of(self._transaction(lambda c: c.execute(query, (since,)).fetchall(), immediate=False))

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`."""
        query = "UPDATE predictions SET features = NULL WHERE features IS NOT NULL AND time < ?"
        return self._transaction(lambda c: c.execute(query, (before,)).rowcount)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
