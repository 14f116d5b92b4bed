"""Schema-driven fuzzing of every operation in the service's own OpenAPI document (schemathesis).

A fixed, derandomized budget per operation against the loopback server; valid and invalid requests alike
must never produce a 5xx or leak a traceback or a source path.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from bento.openapi import document
from bento.server.app import ROUTES
from bento.settings import ServiceSettings

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (after the importorskip)
from schemathesis import GenerationMode  # noqa: E402

# serial: on an xdist worker schemathesis' per-operation tests ran about half the fuzzing (3,171 requests of
# 7,028) and reported one test of 18
pytestmark = pytest.mark.serial

MAX_EXAMPLES = 30
LEAKS = re.compile(r"Traceback|/work/|\.py\b|site-packages")
_examples_run = 0


# Parametrizing needs the operations at collection time, before the server runs, so the schema is built from
# the same function that serves /openapi.json; the first test checks the served document is that one.
# (schemathesis.pytest.from_fixture would load it from the server, but its lazy loader sets
# `request.node._nodeid`, which pytest 9 no longer has.)
DOCUMENT = json.loads(json.dumps(document.document(ServiceSettings())))
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES, deterministic=True
)


def test_the_fuzzed_schema_is_the_one_the_service_serves(service):
    served = httpx.get(f"{service.url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == DOCUMENT
    assert len(schema) == len(ROUTES)  # every route of bento/server/app.py
    loaded = schemathesis.openapi.from_url(f"{service.url}/openapi.json", timeout=10)  # leaves out its own URL
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert {result.ok().label for result in loaded.get_all_operations()} == labels - {"GET /openapi.json"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_no_leak(case, service, figure):
    global _examples_run
    response = case.call(base_url=service.url, timeout=30)
    _examples_run += 1
    figure("requests sent over all operations", _examples_run)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    text = response.content.decode(errors="replace")  # the docs page's favicon is binary
    assert not LEAKS.search(text), text[:500]
