"""The embedded store of the prediction log: one SQLite file in WAL mode (the default, under READMISSION_HOME).

The tables and semantics are those of bento/predictionlog/store.py. The file, and the folder created for it, are
readable by the service's user only.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bento.core.ids import first_id_at
from bento.predictionlog.store import (
    ERASE_ROWS,
    INSERT_OUTCOME,
    LABELLED_MARKER,
    LABELLED_SINCE,
    LEASE,
    PAIRED_SINCE,
    RELEASE_LEASE,
    SAVE_FIGURES,
    SCORED_MARKER,
    SCORED_SINCE,
    STORED_FIGURES,
    TAKE_LEASE,
    Recorded,
    ShadowRow,
    StoreBusyError,
    StoredFigures,
    StoreError,
    check_outcomes,
    chunks,
    figure_rows,
    labelled_of,
    marker_of,
    new_outcomes,
    paired_of,
    recorded_after_insert,
    rows_of,
    scored_marker_of,
    scored_of,
    stored_of,
)
from bento.quality.comparison import Paired
from bento.quality.windows import Labelled, Scored

if TYPE_CHECKING:
    from bento.core.scoring import ScoredBatch

SQLITE_FILE = "predictions.db"
T = TypeVar("T")
BUSY_MILLISECONDS = 2000  # how long a write waits for a lock another connection holds before it fails


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
CREATE TABLE IF NOT EXISTS shadow_predictions (
    prediction_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    probability REAL NOT NULL,
    label INTEGER NOT NULL,
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

    def append(self, batches: Sequence[ScoredBatch], keep_features: bool, shadow: Sequence[ShadowRow] = ()) -> None:
        """Add the scored rows and the challenger's rows in one transaction."""
        rows = rows_of(batches, keep_features)

        def work(connection: sqlite3.Connection) -> None:
            connection.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
            connection.executemany("INSERT INTO shadow_predictions VALUES (?, ?, ?, ?)", shadow)

        self._transaction(work)

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
        """Predictions made since `since` that have an outcome, served and shadow."""
        query = LABELLED_SINCE.format("?")
        return labelled_of(self._transaction(lambda c: c.execute(query, (since, since)).fetchall(), immediate=False))

    def paired(self, since: float) -> Paired:
        """Predictions made since `since` that have an outcome and a challenger's score."""
        query = PAIRED_SINCE.format("?")
        return paired_of(self._transaction(lambda c: c.execute(query, (since,)).fetchall(), immediate=False))

    def scored(self, since: float) -> Scored:
        """Every logged probability made since `since`."""
        query = SCORED_SINCE.format("?")
        return scored_of(self._transaction(lambda c: c.execute(query, (first_id_at(since),) * 2).fetchall(), False))

    def scored_marker(self) -> str:
        """The oldest and newest ids."""
        return scored_marker_of(self._transaction(lambda c: c.execute(SCORED_MARKER).fetchone(), immediate=False))

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`."""
        query = "UPDATE predictions SET features = NULL WHERE features IS NOT NULL AND time < ?"
        return self._transaction(lambda c: c.execute(query, (before,)).rowcount)

    def erase_predictions(self, before: float, rows: int = ERASE_ROWS) -> int:
        """Erase at most `rows` of the oldest predictions made before `before`, their outcomes and their shadow
        rows: the statements pick the same rows, under the one write lock of the transaction."""
        oldest = "SELECT id FROM predictions WHERE id < ? ORDER BY id LIMIT ?"  # ids sort by time: the primary key
        bound = (first_id_at(before), rows)

        def work(connection: sqlite3.Connection) -> int:
            connection.execute(f"DELETE FROM outcomes WHERE prediction_id IN ({oldest})", bound)
            connection.execute(f"DELETE FROM shadow_predictions WHERE prediction_id IN ({oldest})", bound)
            return connection.execute(f"DELETE FROM predictions WHERE id IN ({oldest})", bound).rowcount

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
