"""Live performance with several pods on one PostgreSQL log: the lease contract of
tests/unit/monitoring/lease_contract.py, each store its own connections as a pod's would be."""

from __future__ import annotations

import pytest

from bento.predictionlog.postgres import PostgresStore
from tests.unit.monitoring.lease_contract import LeaseContract, Opener


class TestPostgresLease(LeaseContract):
    @pytest.fixture
    def opened(self, postgres) -> Opener:
        url = postgres.database()
        return lambda: PostgresStore(url)
