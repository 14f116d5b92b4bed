"""The prediction log's PostgreSQL store (bento/predictionlog/postgres.py) on a real server (tests/postgres_server.py):
the store contract of tests/unit/predictionlog/store_contract.py, then a server that stops and comes back."""

from __future__ import annotations

import time

import psycopg
import pytest

from bento.predictionlog.postgres import PostgresStore
from bento.predictionlog.store import LogStore, Recorded, StoreError, UnknownPredictionError
from tests.helpers import queued
from tests.unit.predictionlog.store_contract import Query, StoreContract, batch


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, postgres) -> tuple[LogStore, Query]:
        """A fresh database of the session's server, and a way to read it behind the store's back."""
        url = postgres.database()
        opened = PostgresStore(url)

        def query(sql: str) -> list[tuple]:
            with psycopg.connect(url) as db:
                return db.execute(sql).fetchall()

        yield opened, query
        opened.close()

    @pytest.fixture
    def earlier(self, postgres):
        """An earlier release's log in a fresh database, then a store opening it."""
        url, opened = postgres.database(), []

        def open_after(statements: list[tuple[str, list[tuple]]]) -> tuple[LogStore, Query]:
            with psycopg.connect(url) as db:
                for statement, rows in statements:
                    db.cursor().executemany(statement, rows) if rows else db.execute(statement)
            opened.append(PostgresStore(url))

            def query(sql: str) -> list[tuple]:
                with psycopg.connect(url) as db:
                    return db.execute(sql).fetchall()

            return opened[0], query

        yield open_after
        for store in opened:
            store.close()


def test_postgres_fails_while_the_server_is_down_and_writes_again_once_it_is_back(postgres):
    """No restart of the store: the next write after the server is back connects again. The password in the
    URL is in no error."""
    password = "not-in-any-message"  # pragma: allowlist secret (trust authentication ignores it)
    store = PostgresStore(postgres.database().replace("postgres@", f"postgres:{password}@", 1))
    before, during, after = batch(2), batch(2, seed=1), batch(2, seed=2)
    store.append(queued(before), keep_features=False)
    postgres.stop()
    try:
        started = time.monotonic()
        for _ in range(2):  # the lost connection, then a refused new one
            with pytest.raises(StoreError) as raised:
                store.append(queued(during), keep_features=False)
            assert password not in str(raised.value) and f":{postgres.port}/" in str(raised.value)
        assert time.monotonic() - started < 10, "a write waited on the stopped server"
    finally:
        postgres.start()
    store.append(queued(after), keep_features=False)
    assert store.record_outcomes({before.ids[0]: 1, after.ids[0]: 0}, time.time()) == Recorded(2, 0)
    with pytest.raises(UnknownPredictionError):
        store.record_outcomes({during.ids[0]: 1}, time.time())
    store.close()
