"""Live performance with several pods on one PostgreSQL log: the lease contract of
tests/unit/monitoring/lease_contract.py, each store its own connections as a pod's would be."""

from __future__ import annotations

import pytest

from tests.unit.monitoring.lease_contract import LeaseContract


class TestPostgresLease(LeaseContract):
    @pytest.fixture
    def location(self, postgres) -> str:
        return postgres.database()
