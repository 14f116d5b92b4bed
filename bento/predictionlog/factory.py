"""Which store holds the prediction log: the one place that knows every store (READMISSION_PREDICTION_LOG)."""

from __future__ import annotations

from pathlib import Path

from bento.predictionlog.sqlite import SQLITE_FILE, SQLiteStore
from bento.predictionlog.store import LogStore

OFF = "off"


def open_store(location: str, home: Path) -> LogStore | None:
    """The store READMISSION_PREDICTION_LOG names: empty for SQLite under `home`, a postgresql:// URL, a SQLite
    path (or sqlite:///path), or "off" for no log."""
    if location == OFF:
        return None
    if location.startswith(("postgresql://", "postgres://")):
        # psycopg is imported only here, for a PostgreSQL log: training and `readmission monitor` run without it
        from bento.predictionlog.postgres import PostgresStore

        return PostgresStore(location)
    path = Path(location.removeprefix("sqlite:///")) if location else home / SQLITE_FILE
    return SQLiteStore(path)
