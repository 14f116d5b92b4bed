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
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bento.core.ids import first_id_at
from bento.predictionlog.store import (
    ERASE_ROWS,
    ERASED,
    INSERT_OUTCOME,
    INSERT_SCORES,
    LABELLED,
    LABELLED_MARKER,
    LEASE,
    MIGRATE_CHUNK,
    MIGRATION,
    OLD_PREDICTIONS,
    OLD_SHADOWS,
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
T = TypeVar("T")
CONNECT_SECONDS = 3
SCHEMA_LOCK = 0x7265_6164_6D69  # pg_advisory_xact_lock key: workers starting together create the tables once
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS prediction_batches (
        first_id TEXT PRIMARY KEY,
        rows INTEGER NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        model_version TEXT NOT NULL,
        probabilities BYTEA NOT NULL,
        labels BYTEA NOT NULL,
        features BYTEA
    )""",
    "CREATE INDEX IF NOT EXISTS prediction_batches_with_features ON prediction_batches (time) "
    "WHERE features IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS shadow_batches (
        first_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        probabilities BYTEA NOT NULL,
        labels BYTEA NOT NULL,
        PRIMARY KEY (first_id, model_version)
    )""",
    """CREATE TABLE IF NOT EXISTS outcomes (
        prediction_id TEXT PRIMARY KEY,
        readmitted INTEGER NOT NULL,
        time DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS labelled_scores (
        prediction_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        probability DOUBLE PRECISION NOT NULL,
        label INTEGER NOT NULL,
        served INTEGER NOT NULL,
        PRIMARY KEY (prediction_id, model_version)
    )""",
    "CREATE TABLE IF NOT EXISTS monitor_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "expires DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS monitor_figures (name TEXT PRIMARY KEY, computed_at DOUBLE PRECISION NOT NULL, "
    "marker TEXT NOT NULL, figures TEXT NOT NULL)",
)
# The batch that may hold each id (store.py's FIND_BATCH for every id in one statement: one round trip).
CANDIDATES = (
    "SELECT i.id, b.first_id, b.rows, b.time, b.model_version, b.probabilities, b.labels "
    "FROM unnest(%s::text[]) AS i (id) CROSS JOIN LATERAL (SELECT * FROM prediction_batches "
    "WHERE first_id <= i.id ORDER BY first_id DESC LIMIT 1) AS b"
)
BATCH_COLUMN_TYPES = ("text", "int4", "float8", "text", "bytea", "bytea", "bytea")
SHADOW_COLUMN_TYPES = ("text", "text", "bytea", "bytea")


def _migrate(cursor: psycopg.Cursor) -> None:
    """Convert an earlier release's store (bento/predictionlog/store.py's MIGRATION), once, under the schema lock."""
    cursor.execute("SELECT to_regclass('predictions') IS NOT NULL, to_regclass('shadow_predictions') IS NOT NULL")
    predictions, shadows = cursor.fetchone()
    if not predictions:
        return
    logger.info("prediction log: converting an earlier release's log to batches (once)")
    if not shadows:  # a release before shadow scoring
        cursor.execute(
            "CREATE TABLE shadow_predictions (prediction_id TEXT, model_version TEXT, probability DOUBLE PRECISION, "
            "label INTEGER)"
        )
    for source, table, convert in (
        (OLD_PREDICTIONS, "prediction_batches", migrated_batches),
        (OLD_SHADOWS, "shadow_batches", migrated_shadows),
    ):
        with cursor.connection.cursor(name=f"old_{table}") as old:  # server-side: read in chunks
            old.execute(source)
            while rows := old.fetchmany(MIGRATE_CHUNK):
                with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    for row in convert(rows):
                        copy.write_row(row)
    for statement in MIGRATION:
        cursor.execute(statement)
    logger.info("prediction log: converted")


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
                _migrate(cursor)
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

    def append(self, batches: Sequence[LoggedBatch], keep_features: bool, shadow: Sequence[ShadowBatch] = ()) -> None:
        """Add the scored batches and the challenger's scores of them in one transaction (COPY)."""
        rows, scores = batch_rows(batches, keep_features), shadow_rows(shadow)

        def work(cursor: psycopg.Cursor) -> None:
            for table, types, written in (
                ("prediction_batches", BATCH_COLUMN_TYPES, rows),
                ("shadow_batches", SHADOW_COLUMN_TYPES, scores),
            ):
                if written:
                    with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                        copy.set_types(list(types))
                        for row in written:
                            copy.write_row(row)

        self._transaction(work)

    def record_outcomes(self, outcomes: dict[str, int], now: float) -> Recorded:
        """Record true outcomes: all or none. Their batches and recorded outcomes are looked up first, then the
        outcomes and their scores inserted in one short transaction; a call inserting the same ids at the same time
        waits for this one at the primary key, then skips them."""
        ids = list(outcomes)

        def read(cursor: psycopg.Cursor) -> tuple[dict, dict[str, int]]:
            cursor.execute(CANDIDATES, (ids,))
            candidates = {prediction_id: tuple(batch) for prediction_id, *batch in cursor.fetchall()}
            cursor.execute(
                SHADOWS_OF.format("SELECT unnest(%s::text[])"), (sorted({b[0] for b in candidates.values()}),)
            )
            return scores_of(ids, candidates, cursor.fetchall()), _recorded(cursor, ids)

        scores, recorded = self._transaction(read)
        check_outcomes(outcomes, set(scores), recorded)
        rows = new_outcomes(outcomes, recorded, now)
        if not rows:
            return Recorded(recorded=0, unchanged=len(outcomes))

        def write(cursor: psycopg.Cursor) -> Recorded:
            cursor.executemany(INSERT_OUTCOME.format("%s"), rows)
            inserted = cursor.rowcount
            raced = {} if inserted == len(rows) else _recorded(cursor, [i for i, _, _ in rows])
            result = recorded_after_insert(outcomes, inserted, rows, raced)
            cursor.executemany(INSERT_SCORES.format("%s"), [row for i, _, _ in rows for row in scores[i]])
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
        """`read` through a server-side cursor: the rows come READ_ROWS at a time, not all at once."""

        def work(cursor: psycopg.Cursor) -> T:
            with cursor.connection.cursor(name="read") as rows:
                rows.execute(read.query.format("%s"), read.parameters(since))
                return read.of(rows)

        return self._transaction(work)

    def scored_marker(self) -> str:
        """The oldest and newest ids."""

        def work(cursor: psycopg.Cursor) -> str:
            cursor.execute(SCORED_MARKER)
            return scored_marker_of(cursor.fetchone())

        return self._transaction(work)

    def purge_features(self, before: float) -> int:
        """Erase the encoded rows of predictions made before `before`."""

        def work(cursor: psycopg.Cursor) -> int:
            cursor.execute(
                "UPDATE prediction_batches SET features = NULL WHERE features IS NOT NULL AND time < %s RETURNING rows",
                (before,),
            )
            return sum(rows for (rows,) in cursor.fetchall())

        return self._transaction(work)

    def erase_predictions(self, before: float, rows: int = ERASE_ROWS) -> int:
        """Erase the oldest batches made before `before` (at most `rows` predictions, at least one batch), their
        outcomes, scores and shadow rows, in one transaction; batches another replica is erasing at the same moment
        are skipped, not waited for."""
        oldest = (
            "SELECT first_id, rows FROM prediction_batches WHERE first_id < %s "
            "ORDER BY first_id LIMIT %s FOR UPDATE SKIP LOCKED"
        )

        def work(cursor: psycopg.Cursor) -> int:
            cursor.execute(oldest, (first_id_at(before), rows))
            erased = within(cursor.fetchall(), rows)
            bounds = [id_range(first_id, count) for first_id, count in erased]
            for table, key in ERASED:
                cursor.executemany(f"DELETE FROM {table} WHERE {key} BETWEEN %s AND %s", bounds)
            cursor.execute("DELETE FROM prediction_batches WHERE first_id = ANY(%s)", ([i for i, _ in erased],))
            return sum(count for _, count in erased)

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
