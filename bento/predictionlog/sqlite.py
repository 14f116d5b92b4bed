"""The embedded store of the prediction log: one SQLite file in WAL mode (the default, under READMISSION_HOME).

The tables and semantics are those of bento/predictionlog/store.py. The file, and the folder created for it, are
readable by the service's user only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bento.core.ids import first_id_at, offset_in
from bento.predictionlog.store import (
    ERASE_ROWS,
    ERASED,
    FIND_BATCH,
    INSERT_OUTCOME,
    INSERT_SCORES,
    LABELLED,
    LABELLED_MARKER,
    LEASE,
    MIGRATE_CHUNK,
    MIGRATION,
    OLD_PREDICTIONS,
    OLD_SHADOWS,
    OLD_TABLES,
    PAIRED,
    RELEASE_LEASE,
    SAVE_FIGURES,
    SCORED,
    SCORED_MARKER,
    SHADOWS_OF,
    STORED_FIGURES,
    TAKE_LEASE,
    LoggedBatch,
    Read,
    Recorded,
    ShadowBatch,
    StoreBusyError,
    StoredFigures,
    StoreError,
    batch_rows,
    check_outcomes,
    chunks,
    figure_rows,
    id_range,
    marker_of,
    migrated_batches,
    migrated_shadows,
    new_outcomes,
    recorded_after_insert,
    scored_marker_of,
    scores_of,
    shadow_rows,
    stored_of,
    within,
)
from bento.quality.comparison import Paired
from bento.quality.windows import Labelled, Scored

logger = logging.getLogger("readmission")
SQLITE_FILE = "predictions.db"
T = TypeVar("T")
BUSY_MILLISECONDS = 2000  # how long a write waits for a lock another connection holds before it fails


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS prediction_batches (
    first_id TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    time REAL NOT NULL,
    model_version TEXT NOT NULL,
    probabilities BLOB NOT NULL,
    labels BLOB NOT NULL,
    features BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS prediction_batches_with_features ON prediction_batches (time) WHERE features IS NOT NULL;
CREATE TABLE IF NOT EXISTS shadow_batches (
    first_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    probabilities BLOB NOT NULL,
    labels BLOB NOT NULL,
    PRIMARY KEY (first_id, model_version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    prediction_id TEXT PRIMARY KEY,
    readmitted INTEGER NOT NULL,
    time REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labelled_scores (
    prediction_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    time REAL NOT NULL,
    probability REAL NOT NULL,
    label INTEGER NOT NULL,
    served INTEGER NOT NULL,
    PRIMARY KEY (prediction_id, model_version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS monitor_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS monitor_figures (
    name TEXT PRIMARY KEY,
    computed_at REAL NOT NULL,
    marker TEXT NOT NULL,
    figures TEXT NOT NULL
);
"""


def _marks(part: list[str]) -> str:
    """The `?` markers of an `IN (...)` over `part`."""
    return ",".join("?" * len(part))


def _candidates(connection: sqlite3.Connection, ids: list[str]) -> dict[str, tuple]:
    """The batch that may hold each id (FIND_BATCH): one look-up of the primary key per batch, the ids in order."""
    found: dict[str, tuple] = {}
    batch: tuple | None = None
    for prediction_id in sorted(ids):
        if batch is None or offset_in(batch[0], batch[1], prediction_id) is None:
            rows = connection.execute(FIND_BATCH.format("?"), (prediction_id,)).fetchall()
            if not rows:
                continue
            batch = rows[0]
        found[prediction_id] = batch
    return found


def _recorded(connection: sqlite3.Connection, ids: list[str]) -> dict[str, int]:
    """The outcomes recorded for `ids`."""
    recorded: dict[str, int] = {}
    for part in chunks(ids):
        query = f"SELECT prediction_id, readmitted FROM outcomes WHERE prediction_id IN ({_marks(part)})"
        recorded.update(connection.execute(query, part))
    return recorded


def _migrate(connection: sqlite3.Connection) -> None:
    """Convert an earlier release's store (bento/predictionlog/store.py's MIGRATION), once, under the write lock."""

    def old() -> set[str]:
        query = f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN {OLD_TABLES!r}"
        return {name for (name,) in connection.execute(query)}

    if not old():
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = old()  # another worker may have converted it meanwhile
        if "predictions" in found:
            logger.info("prediction log: converting an earlier release's log to batches (once)")
            if "shadow_predictions" not in found:  # a release before shadow scoring
                connection.execute("CREATE TABLE shadow_predictions (prediction_id, model_version, probability, label)")
            for source, target, convert in (
                (OLD_PREDICTIONS, "prediction_batches VALUES (?, ?, ?, ?, ?, ?, ?)", migrated_batches),
                (OLD_SHADOWS, "shadow_batches VALUES (?, ?, ?, ?)", migrated_shadows),
            ):
                cursor = connection.execute(source)
                while rows := cursor.fetchmany(MIGRATE_CHUNK):
                    connection.executemany(f"INSERT INTO {target}", convert(rows))
            for statement in MIGRATION:
                connection.execute(statement)
            logger.info("prediction log: converted")
        connection.execute("COMMIT")
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")


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
                _migrate(connection)
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

    def append(self, batches: Sequence[LoggedBatch], keep_features: bool, shadow: Sequence[ShadowBatch] = ()) -> None:
        """Add the scored batches and the challenger's scores of them in one transaction."""
        rows, scores = batch_rows(batches, keep_features), shadow_rows(shadow)

        def work(connection: sqlite3.Connection) -> None:
            connection.executemany("INSERT INTO prediction_batches VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            connection.executemany("INSERT INTO shadow_batches VALUES (?, ?, ?, ?)", scores)

        self._transaction(work)

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> Recorded:
        """Record true outcomes: all or none. Their batches and recorded outcomes are looked up first without the
        write lock, then the outcomes and their scores inserted in one short transaction."""

        def read(connection: sqlite3.Connection) -> tuple[dict, dict[str, int]]:
            candidates = _candidates(connection, list(outcomes))
            shadows = []
            for part in chunks(sorted({row[0] for row in candidates.values()})):
                shadows += connection.execute(SHADOWS_OF.format(_marks(part)), part).fetchall()
            return scores_of(list(outcomes), candidates, shadows), _recorded(connection, list(outcomes))

        scores, recorded = self._transaction(read, immediate=False)
        check_outcomes(outcomes, set(scores), recorded)
        rows = new_outcomes(outcomes, recorded, now)
        if not rows:
            return Recorded(recorded=0, unchanged=len(outcomes))

        def write(connection: sqlite3.Connection) -> Recorded:
            inserted = connection.executemany(INSERT_OUTCOME.format("?"), rows).rowcount
            raced = {} if inserted == len(rows) else _recorded(connection, [i for i, _, _ in rows])
            result = recorded_after_insert(outcomes, inserted, rows, raced)
            connection.executemany(INSERT_SCORES.format("?"), [row for i, _, _ in rows for row in scores[i]])
            return result

        return self._transaction(write)

    def labelled(self, since: float) -> Labelled:
        """Predictions made since `since` that have an outcome, served and shadow."""
        return self._read(LABELLED, since)

    def paired(self, since: float) -> Paired:
        """Predictions made since `since` that have an outcome and a challenger's score."""
        return self._read(PAIRED, since)

    def scored(self, since: float) -> Scored:
        """Every logged probability made since `since`."""
        return self._read(SCORED, since)

    def _read(self, read: Read[T], since: float) -> T:
        return self._transaction(
            lambda c: read.of(c.execute(read.query.format("?"), read.parameters(since))), immediate=False
        )

    def scored_marker(self) -> str:
        """The oldest and newest ids."""
        return scored_marker_of(self._transaction(lambda c: c.execute(SCORED_MARKER).fetchone(), immediate=False))

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`."""
        query = "UPDATE prediction_batches SET features = NULL WHERE features IS NOT NULL AND time < ? RETURNING rows"
        return self._transaction(lambda c: sum(rows for (rows,) in c.execute(query, (before,)).fetchall()))

    def erase_predictions(self, before: float, rows: int = ERASE_ROWS) -> int:
        """Erase the oldest batches made before `before` (at most `rows` predictions, at least one batch), their
        outcomes, scores and shadow rows, under the one write lock of the transaction."""
        oldest = "SELECT first_id, rows FROM prediction_batches WHERE first_id < ? ORDER BY first_id LIMIT ?"

        def work(connection: sqlite3.Connection) -> int:
            erased = within(connection.execute(oldest, (first_id_at(before), rows)).fetchall(), rows)
            bounds = [id_range(first_id, count) for first_id, count in erased]
            for table, key in ERASED:
                connection.executemany(f"DELETE FROM {table} WHERE {key} BETWEEN ? AND ?", bounds)
            connection.executemany("DELETE FROM prediction_batches WHERE first_id = ?", [(i,) for i, _ in erased])
            return sum(count for _, count in erased)

        return self._transaction(work)

    def labelled_marker(self) -> str:
        """The outcomes' count and latest time."""
        return marker_of(self._transaction(lambda c: c.execute(LABELLED_MARKER).fetchone(), immediate=False))

    def take_lease(self, holder: str, now: float, seconds: float) -> bool:
        """Take or renew the monitor's lease (one upsert under the write lock)."""
        row = (LEASE, holder, now + seconds, now)
        return self._transaction(lambda c: c.execute(TAKE_LEASE.format("?"), row).rowcount == 1)

    def release_lease(self, holder: str) -> None:
        """Give the lease up if `holder` holds it."""
        self._transaction(lambda c: c.execute(RELEASE_LEASE.format("?"), (LEASE, holder)))

    def save_figures(self, stored: StoredFigures) -> None:
        """Replace the stored figures, comparison and estimates, together."""
        self._transaction(lambda c: c.executemany(SAVE_FIGURES.format("?"), figure_rows(stored)))

    def stored_figures(self) -> StoredFigures | None:
        """The stored figures, comparison and estimates."""
        return stored_of(self._transaction(lambda c: c.execute(STORED_FIGURES).fetchall(), immediate=False))

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
