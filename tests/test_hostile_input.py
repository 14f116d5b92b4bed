"""Hostile input over real HTTP: slow bodies, very long strings, wrong content types, odd bytes.

Every answer is a 4xx JSON error that names the problem, small whatever the request's size, and the
service keeps answering ordinary requests afterwards. (Fuzzing from the OpenAPI document is in
test_fuzz.py; oversized bodies, nesting, huge numbers and lying binary headers in test_service.py and
test_v2.py.)
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

from bento.settings import ServiceSettings
from tests.helpers import INFER, RECORD, field_request

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
    # headers are not bounded by the body deadline but by the header timeout (tests/test_connections.py); until
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
