"""The prediction log in PostgreSQL (READMISSION_PREDICTION_LOG=postgresql://...): the tables and semantics of
bento/predictionlog/sqlite.py's SQLiteStore, for services whose replicas share one log.

One connection per thread that uses the store (the log's writer, feedback's, live performance's), as in
SQLiteStore, so a long feedback call never stalls the writer; each is opened on first use and opened again after
a failure, so a database that was down is written again, without restarting the service, as soon as it is back;
a short connect timeout keeps the writer thread from hanging on an unreachable server. The URL may hold a
password: only the host, port and database are named in logs and errors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

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

logger = logging.getLogger("readmission")
T = TypeVar("T")
CONNECT_SECONDS = 3
SCHEMA_LOCK = 0x7265_6164_6D69  # pg_advisory_xact_lock key: workers starting together create the tables once
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS predictions (
        id TEXT PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        model_version TEXT NOT NULL,
        probability DOUBLE PRECISION NOT NULL,
        label INTEGER NOT NULL,
        features BYTEA
    )""",
    "CREATE INDEX IF NOT EXISTS predictions_with_features ON predictions (time) WHERE features IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS outcomes (
        prediction_id TEXT PRIMARY KEY,
        readmitted INTEGER NOT NULL,
        time DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS shadow_predictions (
        prediction_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        probability DOUBLE PRECISION NOT NULL,
        label INTEGER NOT NULL,
        PRIMARY KEY (prediction_id, model_version)
    )""",
    "CREATE TABLE IF NOT EXISTS monitor_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "expires DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS monitor_figures (name TEXT PRIMARY KEY, computed_at DOUBLE PRECISION NOT NULL, "
    "marker TEXT NOT NULL, figures TEXT NOT NULL)",
)
COLUMN_TYPES = ("text", "float8", "text", "float8", "int4", "bytea")
SHADOW_COLUMN_TYPES = ("text", "text", "float8", "int4")


def where_of(url: str) -> str:
    """host:port/database of a connection URL, without user or password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable URL)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class PostgresStore:
    """The prediction log in a PostgreSQL database: a connection per thread, reopened after failures."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.where = where_of(url)
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection:
        """This thread's open connection, or a new one with the schema created (none yet, or it was lost)."""
        connection: psycopg.Connection | None = getattr(self._local, "connection", None)
        if connection is not None and not connection.closed:
            return connection
        connection = psycopg.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_SECONDS, keepalives=1, keepalives_idle=10
        )
        try:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                for statement in SCHEMA:
                    cursor.execute(statement)
        except psycopg.Error:
            connection.close()
            raise
        logger.info("prediction log: connected to PostgreSQL %s", self.where)
        self._local.connection = connection
        with self._lock:
            self._connections = [c for c in self._connections if not c.closed] + [connection]
        return connection

    def _transaction(self, work: Callable[[psycopg.Cursor], T]) -> T:
        try:
            connection = self._connect()
            with connection.transaction(), connection.cursor() as cursor:
                return work(cursor)
        except psycopg.Error as error:  # a lost connection is closed by psycopg: the next call connects again
            busy = isinstance(error, psycopg.errors.DeadlockDetected | psycopg.errors.LockNotAvailable)
            raise (StoreBusyError if busy else StoreError)(f"PostgreSQL {self.where}: {str(error).strip()}") from error

    def append(self, batches: Sequence[ScoredBatch], keep_features: bool, shadow: Sequence[ShadowRow] = ()) -> None:
        """Add the scored rows and the challenger's rows in one transaction (COPY)."""
        rows = rows_of(batches, keep_features)

        def work(cursor: psycopg.Cursor) -> None:
            columns = "id, time, model_version, probability, label, features"
            with cursor.copy(f"COPY predictions ({columns}) FROM STDIN") as copy:
                copy.set_types(list(COLUMN_TYPES))
                for row in rows:
                    copy.write_row(row)
            if shadow:
                columns = "prediction_id, model_version, probability, label"
                with cursor.copy(f"COPY shadow_predictions ({columns}) FROM STDIN") as copy:
                    copy.set_types(list(SHADOW_COLUMN_TYPES))
                    for row in shadow:
                        copy.write_row(row)

        self._transaction(work)

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> Recorded:
        """Record true outcomes: all or none. Looked up first, then inserted in one short transaction; a call
        inserting the same ids at the same time waits for this one at the primary key, then skips them."""
        ids = list(outcomes)

        def read(cursor: psycopg.Cursor) -> tuple[set[str], dict[str, int]]:
            cursor.execute("SELECT id FROM predictions WHERE id = ANY(%s)", (ids,))
            return {prediction_id for (prediction_id,) in cursor.fetchall()}, _recorded(cursor, ids)

        known, recorded = self._transaction(read)
        check_outcomes(outcomes, known, recorded)
        rows = new_outcomes(outcomes, recorded, now)
        if not rows:
            return Recorded(recorded=0, unchanged=len(outcomes))

        def write(cursor: psycopg.Cursor) -> Recorded:
            cursor.executemany(INSERT_OUTCOME.format("%s"), rows)
            inserted = cursor.rowcount
            raced = {} if inserted == len(rows) else _recorded(cursor, [i for i, _, _ in rows])
            return recorded_after_insert(outcomes, inserted, rows, raced)

        return self._transaction(write)

    def labelled(self, since: float) -> Labelled:
        """Predictions made since `since` that have an outcome, served and shadow."""
        query = LABELLED_SINCE.format("%s")

        def work(cursor: psycopg.Cursor) -> list[tuple]:
            cursor.execute(query, (since, since))
            return cursor.fetchall()

        return labelled_of(self._transaction(work))

    def paired(self, since: float) -> Paired:
        """Predictions made since `since` that have an outcome and a challenger's score."""
        query = PAIRED_SINCE.format("%s")

        def work(cursor: psycopg.Cursor) -> list[tuple]:
            cursor.execute(query, (since,))
            return cursor.fetchall()

        return paired_of(self._transaction(work))

    def scored(self, since: float) -> Scored:
        """Every logged probability made since `since`."""
        query = SCORED_SINCE.format("%s")

        def work(cursor: psycopg.Cursor) -> list[tuple]:
            cursor.execute(query, (first_id_at(since),) * 2)
            return cursor.fetchall()

        return scored_of(self._transaction(work))

    def scored_marker(self) -> str:
        """The oldest and newest ids."""

        def work(cursor: psycopg.Cursor) -> str:
            cursor.execute(SCORED_MARKER)
            return scored_marker_of(cursor.fetchone())

        return self._transaction(work)

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`."""

        def work(cursor: psycopg.Cursor) -> int:
            cursor.execute("UPDATE predictions SET features = NULL WHERE features IS NOT NULL AND time < %s", (before,))
            return cursor.rowcount

        return self._transaction(work)

    def erase_predictions(self, before: float, rows: int = ERASE_ROWS) -> int:
        """Erase at most `rows` of the oldest predictions made before `before`, their outcomes and their shadow
        rows, in one statement; rows another replica is erasing at the same moment are skipped, not waited for."""
        statement = (
            "WITH gone AS (DELETE FROM predictions WHERE id IN (SELECT id FROM predictions WHERE id < %s "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id), "  # ids sort by time: the primary key
            "outcomes_gone AS (DELETE FROM outcomes USING gone WHERE outcomes.prediction_id = gone.id), "
            "shadow_gone AS (DELETE FROM shadow_predictions USING gone "
            "WHERE shadow_predictions.prediction_id = gone.id) "
            "SELECT COUNT(*) FROM gone"
        )

        def work(cursor: psycopg.Cursor) -> int:
            cursor.execute(statement, (first_id_at(before), rows))
            return int(cursor.fetchone()[0])

        return self._transaction(work)

    def labelled_marker(self) -> str:
        """The outcomes' count and latest time."""

        def work(cursor: psycopg.Cursor) -> str:
            cursor.execute(LABELLED_MARKER)
            return marker_of(cursor.fetchone())

        return self._transaction(work)

    def take_lease(self, holder: str, now: float, seconds: float) -> bool:
        """Take or renew the monitor's lease (one upsert: the row lock orders pods racing for it)."""

        def work(cursor: psycopg.Cursor) -> bool:
            cursor.execute(TAKE_LEASE.format("%s"), (LEASE, holder, now + seconds, now))
            return cursor.rowcount == 1

        return self._transaction(work)

    def release_lease(self, holder: str) -> None:
        """Give the lease up if `holder` holds it."""
        self._transaction(lambda cursor: cursor.execute(RELEASE_LEASE.format("%s"), (LEASE, holder)))

    def save_figures(self, stored: StoredFigures) -> None:
        """Replace the stored figures, comparison and estimates, together."""
        self._transaction(lambda cursor: cursor.executemany(SAVE_FIGURES.format("%s"), figure_rows(stored)))

    def stored_figures(self) -> StoredFigures | None:
        """The stored figures, comparison and estimates."""

        def work(cursor: psycopg.Cursor) -> StoredFigures | None:
            cursor.execute(STORED_FIGURES)
            return stored_of(cursor.fetchall())

        return self._transaction(work)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def _recorded(cursor: psycopg.Cursor, ids: list[str]) -> dict[str, int]:
    """The outcomes recorded for `ids`."""
    cursor.execute("SELECT prediction_id, readmitted FROM outcomes WHERE prediction_id = ANY(%s)", (ids,))
    return dict(cursor.fetchall())
