"""Hostile input over real HTTP: slow bodies, very long strings, wrong content types, odd bytes, lone surrogates,
integers of thousands of digits, repeated keys, UTF-16 and UTF-32 bodies, requests pipelined behind a refused one,
and explanations that must not hold the event loop.

Every answer is a 4xx JSON error that names the problem, small whatever the request's size, and the
service keeps answering ordinary requests afterwards. (Fuzzing from the OpenAPI document is in
test_fuzz.py, with strategies of our own in test_fuzz_properties.py; oversized bodies, nesting, huge numbers
and lying binary headers in test_service.py and test_v2.py.)
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from bento.settings import ServiceSettings
from tests.helpers import INFER, RECORD, field_request, scrape

MEGABYTE = "x" * (1024 * 1024)
BODY_TIMEOUT = ServiceSettings().body_timeout_seconds


def refused(answer, status: int, needle: str) -> dict:
    """Assert a small JSON error with `status` that contains `needle`."""
    assert answer.status_code == status, answer.text[:500]
    assert len(answer.content) < 2048, f"the error echoes {len(answer.content)} bytes"
    body = answer.json()
    assert needle in body["error"], body
    return body


def still_serving(client) -> None:
    """An ordinary request still succeeds."""
    answer = client.post("/predict", json=RECORD)
    assert answer.status_code == 200, answer.text


def _trickle(url: str, path: str, declared: int, byte_every: float, limit: float) -> tuple[float, bytes]:
    """Send headers, then one body byte every `byte_every` seconds; return (seconds to answer, answer)."""
    where = urlparse(url)
    started = time.monotonic()
    with socket.create_connection((where.hostname, where.port), timeout=byte_every) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
        )
        answer = b""
        while time.monotonic() - started < limit:
            try:
                connection.sendall(b" ")
            except OSError:
                break  # the server closed the connection after answering
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = next(
                    int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                )
                if len(body) >= length:
                    break
        return time.monotonic() - started, answer


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/predict", INFER])
def test_a_body_sent_byte_by_byte_is_cut_off_at_the_deadline(service, client, path):
    seconds, answer = _trickle(service.url, path, declared=10_000, byte_every=0.2, limit=BODY_TIMEOUT + 20)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"connection: close" in head.lower()
    assert "did not arrive within" in json.loads(body)["error"]
    assert BODY_TIMEOUT - 1 <= seconds <= BODY_TIMEOUT + 5, seconds
    still_serving(client)


@pytest.mark.slow
def test_many_clients_stuck_in_their_headers_do_not_starve_the_others(service):
    # headers are not bounded by the body deadline but by the header timeout (tests/service/test_connections.py); until
    # it cuts them off, half-open requests must not block anybody else
    where = urlparse(service.url)
    stuck = [socket.create_connection((where.hostname, where.port), timeout=5) for _ in range(200)]
    try:
        for connection in stuck:
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        started = time.monotonic()
        fresh = httpx.post(f"{service.url}/predict", json=RECORD, timeout=10)  # a new connection, not a kept one
        assert fresh.status_code == 200 and time.monotonic() - started < 5
    finally:
        for connection in stuck:
            connection.close()


def test_a_megabyte_in_a_categorical_field_names_the_field_and_is_not_echoed(client):
    body = refused(client.post("/predict", json=RECORD | {"race": MEGABYTE}), 400, "race: unknown value")
    assert "..." in body["error"]


def test_a_megabyte_field_name_is_not_echoed(client):
    body = refused(client.post("/predict", json=RECORD | {MEGABYTE: 1}), 400, "unknown field")
    assert "x" * 61 not in body["error"]


def test_a_megabyte_in_a_batch_names_the_row(client):
    refused(client.post("/predict/batch", json=[RECORD, RECORD | {"payer_code": MEGABYTE}]), 400, "[1].payer_code")


@pytest.mark.parametrize("key", ["name", "datatype"])
def test_a_megabyte_v2_input_name_or_datatype_is_not_echoed(client, key):
    request = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]}
    request["inputs"][0][key] = MEGABYTE
    body = refused(client.post(INFER, json=request), 400, "input" if key == "name" else "unknown datatype")
    assert "x" * 61 not in body["error"]


def test_a_megabyte_string_in_a_v2_bytes_tensor_names_the_field(client):
    request = field_request([RECORD])
    for tensor in request["inputs"]:
        if tensor["name"] == "medical_specialty":
            tensor["data"] = [MEGABYTE]
    refused(client.post(INFER, json=request), 400, "medical_specialty")


def test_a_nul_byte_and_control_characters_in_a_value_are_refused(client):
    refused(client.post("/predict", json=RECORD | {"race": "Caucasian\x00"}), 400, "race")
    refused(client.post("/predict", json=RECORD | {"diag_1": "428\r\nSet-Cookie: x=1"}), 400, "diag_1")


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", json.dumps(RECORD).encode()),
        ("application/xml", b"<patient><race>Caucasian</race></patient>"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="race"\r\n\r\nAsian\r\n--x--',
        ),
        ("application/x-www-form-urlencoded", b"race=Asian"),
        ("image/png", b"\x89PNG\r\n\x1a\n"),
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_body_that_is_not_json_is_415_naming_the_type(client, path, content_type, content):
    media = content_type.split(";")[0]
    refused(client.post(path, content=content, headers={"content-type": content_type}), 415, media)


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/xml", b"<inputs/>"),
        ("text/plain", b"hello"),
        ("application/octet-stream", b"\x00\x01\x02\x03"),
        ("application/json", b"\xff\xfe\x00{"),
    ],
)
def test_v2_infer_with_a_body_that_is_not_an_inference_request_is_400(client, content_type, content):
    answer = client.post(INFER, content=content, headers={"content-type": content_type})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]


def test_json_with_a_charset_or_no_content_type_is_accepted(client):
    raw = json.dumps(RECORD).encode()
    assert client.post("/predict", content=raw, headers={"content-type": "application/json; charset=utf-8"}).is_success
    assert client.post("/predict", content=raw, headers={"content-type": ""}).is_success


def test_bytes_that_are_not_utf8_are_400(client):
    raw = json.dumps(RECORD).encode().replace(b"Caucasian", b"Cauc\xe9sian")
    refused(client.post("/predict", content=raw, headers={"content-type": "application/json"}), 400, "UTF-8")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_on_a_prediction_route_is_405_json(client, method):
    answer = client.request(method, "/predict")
    assert answer.status_code == 405
    assert answer.json()["error"]


def test_the_service_still_serves_after_all_of_it(client):
    still_serving(client)


# --- text, numbers and keys no parser should guess at ------------------------------------------------------------


def _raw(client, path: str, text: str) -> httpx.Response:
    """POST `text` as it is written."""
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def _written(value: Any, raw: str) -> str:
    """`value` as JSON text, each string "@" (a key or a value) written as `raw` (json.dumps cannot write a lone
    surrogate's escape, a duplicate key or an integer of 400 digits)."""
    return json.dumps(value).replace('"@"', raw)


def _v2_with(**members: Any) -> dict[str, Any]:
    request = field_request([RECORD])
    return request | members


def _v2_data(field: str, value: Any) -> dict[str, Any]:
    request = field_request([RECORD])
    for tensor in request["inputs"]:
        if tensor["name"] == field:
            tensor["data"] = [value]
    return request


SURROGATE = '"\\ud800"'
SURROGATES = {
    # where: (path, body text, what the message names)
    "field-value": ("/predict", _written(RECORD | {"race": "@"}, SURROGATE), "race"),
    "field-name": ("/predict", _written(RECORD | {"@": 1}, '"ra\\udc00ce"'), "(a key)"),
    "batch": ("/predict/batch", _written([RECORD, RECORD | {"race": "@"}], SURROGATE), "[1].race"),
    "feedback-id": (
        "/feedback",
        _written([{"prediction_id": "@", "readmitted_within_30_days": True}], SURROGATE),
        "[0].prediction_id",
    ),
    "v2-id": (INFER, _written(_v2_with(id="@"), SURROGATE), "id"),
    "v2-output": (INFER, _written(_v2_with(outputs=[{"name": "@"}]), '"\\udfff"'), "outputs[0].name"),
    "v2-parameters": (INFER, _written(_v2_with(parameters={"content_type": "pd", "@": 1}), SURROGATE), "parameters"),
    "v2-bytes-data": (INFER, _written(_v2_data("race", "@"), SURROGATE), "data[0]"),
}


@pytest.mark.parametrize("where", list(SURROGATES))
def test_a_lone_surrogate_is_refused_as_not_unicode_naming_where(client, where):
    path, text, named = SURROGATES[where]
    body = refused(_raw(client, path, text), 400, "not valid Unicode")
    assert named in body["error"], body


def _model_calls(service) -> float:
    """Calls of the model so far (counted per call, not held back as the per-patient figures are)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in scrape(service).splitlines()
        if line.startswith("readmission_model_call_rows_count")
    )


def test_a_v2_request_with_a_surrogate_id_is_neither_scored_nor_logged(client, service):
    before = _model_calls(service)
    refused(_raw(client, INFER, _written(_v2_with(id="@"), SURROGATE)), 400, "id: not valid Unicode")
    assert client.post(INFER, json=_v2_with(id="plain")).status_code == 200
    assert _model_calls(service) == before + 1  # the valid request alone; the shared service has one worker


@pytest.mark.parametrize("digits", [40, 400, 4000])
@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_of_many_digits_is_out_of_range_naming_the_field(client, digits, sign):
    number = sign + "9" * digits
    for field in ("time_in_hospital", "admission_type_id"):
        refused(_raw(client, "/predict", _written(RECORD | {field: "@"}, number)), 400, field)
        refused(_raw(client, "/predict/batch", _written([RECORD | {field: "@"}], number)), 400, f"[0].{field}")
    refused(_raw(client, "/predict", _written({"diag_1_code": "@", "race_Caucasian": 1}, number)), 400, "diag_1_code")
    refused(_raw(client, INFER, _written(_v2_data("time_in_hospital", "@"), number)), 400, "time_in_hospital")


@pytest.mark.parametrize(
    ("path", "text", "key"),
    [
        ("/predict", _written(RECORD | {"@": "Martian"}, '"race"'), "'race'"),
        ("/predict/batch", _written([RECORD | {"@": "[0-10)"}], '"age"'), "'age'"),
        (
            "/feedback",
            _written([{"prediction_id": "a", "@": "b", "readmitted_within_30_days": True}], '"prediction_id"'),
            "'prediction_id'",
        ),
        (INFER, _written(_v2_with(**{"@": []}), '"inputs"'), "'inputs'"),
    ],
    ids=["predict", "batch", "feedback", "v2"],
)
def test_a_key_given_twice_is_refused_naming_it(client, path, text, key):
    body = refused(_raw(client, path, text), 400, "appears twice")
    assert key in body["error"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("path", ["/predict", INFER])
def test_a_utf16_or_utf32_body_is_refused_as_not_utf8(client, encoding, path):
    text = json.dumps(RECORD if path == "/predict" else field_request([RECORD]))
    answer = client.post(path, content=text.encode(encoding), headers={"content-type": "application/json"})
    refused(answer, 400, "not UTF-8")


# --- the connection after an error -------------------------------------------------------------------------------


def _pipelined(url: str, requests: list[bytes], limit: float = 20) -> bytes:
    """Send `requests` in one write on one connection; everything the server sends until it closes or `limit`."""
    where = urlparse(url)
    received = b""
    started = time.monotonic()
    with socket.create_connection((where.hostname, where.port), timeout=1) as connection:
        connection.sendall(b"".join(requests))
        while time.monotonic() - started < limit and received.count(b"HTTP/1.1 ") < len(requests):
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            received += chunk
    return received


def _post(path: str, text: str, close: bool = False) -> bytes:
    body = text.encode()
    connection = b"Connection: close\r\n" if close else b""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        + connection
        + b"\r\n"
        + body
    )


@pytest.mark.parametrize(
    "first",
    [
        _written(_v2_with(id="@"), SURROGATE),
        _written(RECORD | {"race": "@"}, SURROGATE),
        _written(RECORD | {"time_in_hospital": "@"}, "1" + "0" * 400),
    ],
    ids=["v2-surrogate-id", "surrogate-value", "huge-integer"],
)
def test_a_request_pipelined_behind_a_refused_one_is_answered(service, first):
    """Once a 500 without `Connection: close`: uvicorn dropped the connection, the request behind it was scored and
    logged and never answered."""
    path = INFER if '"inputs"' in first else "/predict"
    received = _pipelined(service.url, [_post(path, first), _post("/predict", json.dumps(RECORD), close=True)])
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert answers and answers[0].startswith(b"400"), received[:300]
    assert len(answers) == 2 and answers[1].startswith(b"200"), received[:600]


def test_the_handler_of_a_bug_closes_the_connection():
    """No request a client can send reaches it any more (the tests above were its cases), so it is called directly:
    its answer must say `Connection: close`, which makes uvicorn close the connection before serving the requests
    pipelined behind (it drops the connection anyway once the error propagates)."""
    import asyncio

    from starlette.requests import Request

    from bento.server import app

    request = Request({"type": "http", "method": "POST", "path": "/predict", "headers": [], "query_string": b""})
    answer = asyncio.run(app._unexpected(request, RuntimeError("a bug")))
    assert answer.status_code == 500
    assert answer.headers["connection"] == "close"
    assert json.loads(answer.body)["error"] == "internal error; see the service log"


# --- explanations off the event loop -------------------------------------------------------------------------------


def test_a_thousand_row_explanation_does_not_hold_other_requests(service, client):
    """TreeSHAP of 1,000 rows takes about 0.6 s and checking them 0.3 s: on the event loop they held every other
    request of the worker."""
    import threading

    from tests.helpers import records

    batch = records(1000, seed=5)
    finished = threading.Event()
    answers: list[httpx.Response] = []
    durations: list[float] = []  # of each explained batch: the yardstick, as the machine's speed varies

    def explain() -> None:
        with httpx.Client(base_url=service.url, timeout=60) as other:
            for _ in range(2):
                started = time.monotonic()
                answers.append(other.post("/predict/batch?explain=true", json=batch))
                durations.append(time.monotonic() - started)
        finished.set()

    worker = threading.Thread(target=explain)
    worker.start()
    slowest = 0.0
    health = 0
    while not finished.is_set():
        started = time.monotonic()
        assert client.get("/health").status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        health += 1
    worker.join()
    assert [a.status_code for a in answers] == [200] * 2 and len(answers[0].json()["predictions"][0]["factors"]) == 5
    assert health >= 10, health
    # on the event loop, a /health request waited for nearly the whole explanation; off it, for a fraction of it
    assert slowest < 0.5 * min(durations), f"a /health request waited {slowest:.2f} s; explanations took {durations}"
