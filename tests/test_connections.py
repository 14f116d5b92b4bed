"""Bounded connections (bento/connections.py, bento/grpc_server.py) against a real `bentoml serve` with short bounds.

Raw sockets, so that nothing between the test and the server retries or pools: a client trickling its headers is cut
off at the header timeout, a silent connection (new, or kept alive after an answer) at the idle timeout, a gRPC
client that never finishes the HTTP/2 handshake at the header timeout; connections above the cap get a clean 503
while those below it are served on. Also: no redirect carries the client's Host header.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from tests import servers
from tests.helpers import RECORD, grpc_env, poll, serve

HEADER_SECONDS = 7
IDLE_SECONDS = 3
CAP = 6
MARGIN = 2.5  # the event loop closes on its timer; a loaded 2-core machine may be late by this much
HOSTILE_HOST = "attacker.example"


@pytest.fixture(scope="module")
def bounded(bento_home, tmp_path_factory) -> servers.Server:
    """A service with short bounds, gRPC on a port of its own, no prediction log."""
    extra, address = grpc_env()
    server = serve(
        bento_home["home"],
        tmp_path_factory.mktemp("bounded"),
        READMISSION_HEADER_TIMEOUT_SECONDS=str(HEADER_SECONDS),
        READMISSION_IDLE_TIMEOUT_SECONDS=str(IDLE_SECONDS),
        READMISSION_MAX_CONNECTIONS=str(CAP),
        READMISSION_PREDICTION_LOG="off",
        **extra,
    )
    server.grpc = address
    yield server
    server.stop()


def _address(where: str) -> tuple[str, int]:
    host, port = where.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _connect(where: str) -> socket.socket:
    return socket.create_connection(_address(where), timeout=10)


def _closed_within(sock: socket.socket, limit: float, trickle: bytes = b"") -> tuple[float, bytes]:
    """Seconds until the server closes `sock` (end of stream or reset) and what it sent before, failing after
    `limit`; meanwhile one byte of `trickle` every half second."""
    began = time.monotonic()
    received = b""
    sock.settimeout(0.5)  # the wait between two trickled bytes, and the poll interval
    while time.monotonic() - began < limit:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if trickle:
                try:
                    sock.send(trickle[:1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - began, received
                trickle = trickle[1:]
            continue
        except ConnectionResetError:
            return time.monotonic() - began, received
        if not data:
            return time.monotonic() - began, received
        received += data
    pytest.fail(f"the connection was still open after {limit:g} s (received {received[:200]!r})")


def _request(sock: socket.socket, path: str = "/health", record: dict | None = None) -> tuple[int, dict, bytes]:
    """One keep-alive GET (POST of `record` where given) on `sock` and its answer (status, headers, body)."""
    if record is None:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: service\r\n\r\n".encode())
    else:
        body = json.dumps(record).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: service\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.settimeout(10)
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer (got {raw!r})"
        raw += chunk
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of an answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_slow_headers_and_an_unfinished_grpc_handshake_are_cut_off_at_the_header_timeout(bounded):
    """One byte every half second keeps the idle timer from firing, not the header deadline."""
    results: dict[str, tuple[float, bytes]] = {}
    http = _connect(bounded.url)
    http.sendall(b"POST /predict HTTP/1.1\r\nHost: service\r\n")
    grpc = _connect(bounded.grpc or "")  # never sends the HTTP/2 preface
    limit = HEADER_SECONDS + MARGIN
    threads = [
        threading.Thread(target=lambda: results.update(http=_closed_within(http, limit, b"X-Slow: " + b"a" * 100))),
        threading.Thread(target=lambda: results.update(grpc=_closed_within(grpc, limit))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    http.close()
    grpc.close()
    assert set(results) == {"http", "grpc"}, "a wait failed (see above)"
    seconds, answer = results["http"]
    assert seconds >= IDLE_SECONDS + 0.5, f"closed after {seconds:.1f} s: the idle timer, not the header deadline"
    assert answer == b"", "nothing is answered to a request whose headers never ended"
    assert results["grpc"][0] >= IDLE_SECONDS - 0.5  # grpcio's handshake timeout, not its idle timer (no call made)


def test_a_silent_connection_is_closed_at_the_idle_timeout_new_or_kept_alive(bounded):
    fresh = _connect(bounded.url)
    kept = _connect(bounded.url)
    status, headers, _ = _request(kept)
    assert status == 200 and headers.get("connection") != "close"
    limit = IDLE_SECONDS + MARGIN  # below the header timeout: the idle timer closes them, not the header deadline
    assert limit + 1 < HEADER_SECONDS
    for sock in (fresh, kept):  # each waited from (about) now: the kept one's answer came right after the opening
        assert _closed_within(sock, limit)[1] == b""
        sock.close()


def test_connections_above_the_cap_get_a_clean_503_and_the_others_are_served_on(bounded):
    held = [_connect(bounded.url) for _ in range(CAP)]
    try:
        for sock in held:  # each answered: each counted by the worker
            assert _request(sock)[0] == 200
        for _ in range(3):
            extra = _connect(bounded.url)
            status, headers, body = _request(extra, "/predict", RECORD)
            assert status == 503
            assert headers["connection"] == "close" and headers["retry-after"] == "1"
            assert "READMISSION_MAX_CONNECTIONS" in json.loads(body)["error"]
            assert _closed_within(extra, MARGIN)[1] == b""  # closed after the answer, nothing more
            extra.close()
        for sock in held:  # the connections below the cap predict on
            status, _, body = _request(sock, "/predict", RECORD)
            assert status == 200 and 0 <= json.loads(body)["probability"] <= 1
    finally:
        for sock in held:
            sock.close()

    def served() -> bool:
        with httpx.Client(base_url=bounded.url, timeout=10) as client:
            return client.post("/predict", json=RECORD).status_code == 200

    poll(served, 10, "a new connection to be served once the held ones closed")


@pytest.mark.parametrize("path", ["/", "/docs/", "/predict/", "/v2/health/live/"])
def test_no_redirect_echoes_the_host_header(bounded, path):
    with httpx.Client(base_url=bounded.url, timeout=10) as client:
        answer = client.get(path, headers={"Host": HOSTILE_HOST}, follow_redirects=False)
    assert HOSTILE_HOST not in answer.headers.get("location", "")
    assert HOSTILE_HOST not in answer.text
    if path == "/":
        assert answer.status_code == 307 and answer.headers["location"] == "docs"  # relative: this origin
    else:
        assert answer.status_code == 404
