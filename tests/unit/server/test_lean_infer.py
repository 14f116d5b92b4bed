"""The lean path of `POST` V2 infer (bento/server/app.py `ServiceApp`): every answer, refusal and bug is what
Starlette's router and middleware answered, with the same headers and metrics; other methods and paths still go
through Starlette.

Each case is sent twice to one application: on the lean path, and with the lean path turned off (`_infer_route`
finding no infer route), which is the Starlette route of before.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from bento.server import app as app_module
from tests.helpers import INFER, MODEL, RECORD, matrix_of, matrix_request

TOKEN = "s3cret-token"
ROW = matrix_request(matrix_of([RECORD]))
VERSIONED = f"/v2/models/{MODEL}/versions/1/infer"
ID_BYTES = 36  # a prediction id in the binary extension, after its 4-byte length
KEPT_HEADERS = ("content-type", "content-length", "connection", "www-authenticate", "inference-header-content-length")


def answer(response) -> tuple:
    """Status, body and the headers a client reads; prediction ids (new at every call) left out."""
    body = response.content
    if response.headers.get("content-type") == "application/json":
        parsed = json.loads(body)
        for output in parsed.get("outputs", []):
            if output["name"] == "prediction_id":
                output["data"] = len(output["data"])
        body = parsed
    elif response.headers.get("content-type") == "application/octet-stream":
        body = body[:-ID_BYTES]  # the prediction id is the last output
    headers = {name: response.headers.get(name) for name in KEPT_HEADERS if name != "content-length" or not body}
    return response.status_code, body, headers


def both_ways(client, monkeypatch, method: str, path: str, **kwargs) -> tuple[tuple, tuple]:
    """The answer on the lean path, then through Starlette's router (the lean path off)."""
    routed_paths = []
    starlette_call = Starlette.__call__

    async def spied(self, scope, receive, send):
        routed_paths.append(scope["path"])
        await starlette_call(self, scope, receive, send)

    with monkeypatch.context() as patch:
        patch.setattr(Starlette, "__call__", spied)
        lean = answer(client.request(method, path, **kwargs))
    assert routed_paths == ([] if method == "POST" else [path]), "the lean path serves POST infer, and only it"
    with monkeypatch.context() as patch:
        patch.setattr(app_module, "_infer_route", lambda path: None)
        routed = answer(client.request(method, path, **kwargs))
    return lean, routed


CASES = {
    "one row": (INFER, {"json": ROW}),
    "a version": (VERSIONED, {"json": ROW}),
    "binary outputs": (INFER, {"json": {**ROW, "parameters": {"binary_data_output": True}}}),
    "another model": ("/v2/models/nope/infer", {"json": ROW}),
    "another version": (f"/v2/models/{MODEL}/versions/7/infer", {"json": ROW}),
    "malformed JSON": (INFER, {"content": b'{"inputs": [', "headers": {"content-type": "application/json"}}),
    "empty body": (INFER, {"content": b""}),
    "a bad tensor": (INFER, {"json": {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 3]}]}}),
    "a value out of range": (INFER, {"json": matrix_request(np.full((1, matrix_of([RECORD]).shape[1]), 7.0))}),
    "a bad header length": (INFER, {"json": ROW, "headers": {"inference-header-content-length": "x"}}),
    "a bad content length": (INFER, {"content": b"{}", "headers": {"content-length": "-1"}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_infer_answers_as_starlette_routed_it(app, monkeypatch, case):
    path, kwargs = CASES[case]
    lean, routed = both_ways(app, monkeypatch, "POST", path, **kwargs)
    assert lean == routed
    assert (lean[0] == 200) == (case in ("one row", "a version", "binary outputs"))


def test_a_body_over_the_limit_is_413_and_closes_the_connection_both_ways(serve, monkeypatch):
    lean, routed = both_ways(serve(max_body_bytes=100), monkeypatch, "POST", INFER, json=ROW)
    assert lean == routed
    assert lean[0] == 413 and lean[2]["connection"] == "close"


@pytest.mark.parametrize(
    "authorization", [None, f"Bearer {TOKEN}x", f"bearer  {TOKEN} "], ids=["missing", "wrong", "right"]
)
def test_the_token_guards_infer_both_ways(serve, monkeypatch, authorization):
    client = serve(api_token=TOKEN, max_body_bytes=100)  # a row is over the limit: 413 once the body is read
    headers = {} if authorization is None else {"authorization": authorization}
    lean, routed = both_ways(client, monkeypatch, "POST", INFER, json=ROW, headers=headers)
    assert lean == routed
    assert lean[0] == (413 if authorization and "x" not in authorization else 401)
    if lean[0] == 401:
        assert lean[2]["www-authenticate"] == "Bearer"


def test_other_methods_on_an_infer_path_go_through_starlette(app, monkeypatch):
    lean, routed = both_ways(app, monkeypatch, "GET", INFER)
    assert lean == routed and lean[0] == 405


class Broken:
    """The tiny model, whose probabilities fail as a bug would."""

    def __init__(self, predictor) -> None:
        self.info, self.labels, self.unusual = predictor.info, predictor.labels, predictor.unusual

    def probabilities(self, matrix):
        raise RuntimeError("a bug with private data: patient 1234")


def test_a_bug_is_a_500_that_closes_the_connection_and_is_raised_both_ways(app, tiny, monkeypatch, caplog):
    app.app.state.core.predictor = Broken(tiny)
    lean, routed = both_ways(app, monkeypatch, "POST", INFER, json=ROW)
    assert lean == routed
    assert lean[0] == 500 and lean[2]["connection"] == "close"
    assert lean[1] == {"error": "internal error; see the service log"}
    assert caplog.text.count("unexpected RuntimeError on /v2/models/{model}/infer") == 2
    assert "1234" not in caplog.text


def test_a_bug_propagates_to_the_server_as_starlette_lets_it(serve, tiny):
    """uvicorn logs the exception and closes the connection: the lean path raises it after answering, as Starlette's
    ServerErrorMiddleware does (a TestClient that raises server exceptions sees it)."""
    from starlette.testclient import TestClient

    client = serve()
    client.app.state.core.predictor = Broken(tiny)
    with pytest.raises(RuntimeError, match="a bug"):
        TestClient(client.app).post(INFER, json=ROW)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_traffic_and_refusals_are_counted_per_route_template(app):
    template = "/v2/models/{model}/infer"
    ok = {"endpoint": template, "http_response_code": "200"}
    missing = {"endpoint": template, "http_response_code": "404"}
    refused = {"endpoint": template, "reason": "unknown_model"}
    before = [
        sample("bentoml_service_request_total", ok),
        sample("bentoml_service_request_total", missing),
        sample("readmission_validation_failures_total", refused),
        sample("bentoml_service_request_duration_seconds_count", ok),
    ]
    assert app.post(INFER, json=ROW).status_code == 200
    assert app.post("/v2/models/nope/infer", json=ROW).status_code == 404
    after = [
        sample("bentoml_service_request_total", ok),
        sample("bentoml_service_request_total", missing),
        sample("readmission_validation_failures_total", refused),
        sample("bentoml_service_request_duration_seconds_count", ok),
    ]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 1]
    assert app.app.state.core.in_flight.count == 0
