"""Whether a server answers right: every probability within TOLERANCE of the booster in the harness."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

from bench.inputs import BINARY_BODY, GRPC_1, GRPC_BATCH_BODY, GRPC_METHOD, V2_1, V2_BATCH_BODY, Body, body_key
from bench.processes import Running

TOLERANCE = 1e-5
GRPC_MAX_MESSAGE = 64 * 1024 * 1024  # the checking client's limits (the servers keep their own)


def post(url: str, body: bytes, timeout: float = 30, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST a body (JSON unless `headers` say otherwise), the decoded JSON answer."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"POST {url}: {error.code} {error.read()[:500]!r}") from error


def v2_probabilities(answer: dict[str, Any]) -> np.ndarray:
    """The probability output of a V2 response ("probability" ours/floor/KServe, "predict" MLServer)."""
    outputs = {o["name"]: o for o in answer["outputs"]}
    chosen = next((outputs[n] for n in ("probability", "predict", "output-0") if n in outputs), answer["outputs"][0])
    return np.asarray(chosen["data"], dtype=np.float64).ravel()


def _worst(running: Running, body: Body, reference: np.ndarray) -> float:
    got = v2_probabilities(post(running.url(running.server.infer_path), body.data, headers=body.headers))
    if got.shape != (body.rows,):
        raise AssertionError(f"{running.server.name}: {body.rows} rows gave {got.shape[0]} probabilities")
    return float(np.max(np.abs(got - reference[: body.rows])))


def check(running: Running, bodies: dict[str, Body], reference: np.ndarray) -> tuple[dict[str, float], str]:
    """Every answer within TOLERANCE of the reference probabilities: the worst differences, the binary probe.

    The binary request is checked on servers with `binary`; the others get it once as a probe, whose
    outcome ("ok ..." or why not) is returned and never fails the server.
    """
    server = running.server
    worst = {name: _worst(running, bodies[name], reference) for name in (V2_1, V2_BATCH_BODY)}
    probe = "benchmarked"
    if server.binary:
        worst[BINARY_BODY] = _worst(running, bodies[BINARY_BODY], reference)
    else:
        try:
            diff = _worst(running, bodies[BINARY_BODY], reference)
            probe = f"ok (max |diff| {diff:.2g}), not benchmarked" if diff <= TOLERANCE else f"wrong answers ({diff})"
        except Exception as error:  # any refusal or garbage answer: recorded, not fatal
            probe = f"refused: {type(error).__name__}: {error}"[:300]
    if "predict" in server.extra:
        got = float(post(running.url(server.extra["predict"]), bodies["predict"].data)["probability"])
        worst["predict"] = abs(got - float(reference[0]))
    for name, diff in worst.items():
        if not diff <= TOLERANCE:
            raise AssertionError(f"{server.name} {name}: differs from the reference by {diff:.3g}")
    return worst, probe


def grpc_infer(port: int, frame: bytes, timeout: float = 30) -> bytes:
    """One ModelInfer call with grpcio sending the frame's message as is: the serialized response.

    Waits for the channel to connect (within `timeout`); RuntimeError with the gRPC status unless OK."""
    options = [
        ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
        ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
    ]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary(GRPC_METHOD)  # no (de)serializers: bytes in, bytes out
        try:
            return call(frame[5:], timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as error:
            raise RuntimeError(f"gRPC ModelInfer on port {port}: {error.code().name}: {error.details()}") from error


def grpc_probabilities(data: bytes) -> np.ndarray:
    """The probability output of a serialized ModelInferResponse ("probability", MLServer "predict"), raw or typed."""
    response = service_pb2.ModelInferResponse.FromString(data)
    names = [o.name for o in response.outputs]
    if not names:
        raise AssertionError("gRPC response without outputs")
    index = next((names.index(n) for n in ("probability", "predict", "output-0") if n in names), 0)
    output = response.outputs[index]
    if output.datatype not in ("FP32", "FP64"):
        raise AssertionError(f"gRPC output {output.name} is {output.datatype}, not FP32 or FP64")
    if response.raw_output_contents:
        dtype = "<f4" if output.datatype == "FP32" else "<f8"
        return np.frombuffer(response.raw_output_contents[index], dtype=dtype).astype(np.float64)
    contents = output.contents.fp32_contents if output.datatype == "FP32" else output.contents.fp64_contents
    return np.asarray(contents, dtype=np.float64)


def check_grpc(
    running: Running, bodies: dict[str, Body], reference: np.ndarray
) -> tuple[dict[str, float], dict[str, int]]:
    """Each gRPC request once with grpcio: the worst differences and each response's size as h2load counts it.

    A status other than OK raises RuntimeError (the server fails the round), probabilities beyond TOLERANCE
    AssertionError. The size is that of the length-prefixed response message (5 + its length): h2load's DATA
    bytes of one successful call; a call that fails comes back with no DATA (trailers only), so it shows.
    """
    server = running.server
    worst, sizes = {}, {}
    for name in (GRPC_1, GRPC_BATCH_BODY):
        body = bodies[body_key(name, server.grpc_output)]
        answer = grpc_infer(server.grpc_port or 0, body.data)
        got = grpc_probabilities(answer)
        if got.shape != (body.rows,):
            raise AssertionError(f"{server.name} gRPC: {body.rows} rows gave {got.shape[0]} probabilities")
        worst[name] = float(np.max(np.abs(got - reference[: body.rows])))
        sizes[name] = 5 + len(answer)
        if not worst[name] <= TOLERANCE:
            raise AssertionError(f"{server.name} {name}: differs from the reference by {worst[name]:.3g}")
    return worst, sizes
