"""The Open Inference Protocol (KServe V2) over HTTP: its routes, each a thin adapter over bento/v2/inference.py.

`POST .../infer` reads the body (bento/http/body.py), decodes its tensors, JSON or the binary tensor data extension
(bento/v2/tensors.py), asks the scoring core and encodes the outputs the request names, in binary where it asks.
The health routes answer with the status code and KServe's body; a model or version this server does not serve
is 404 (UNKNOWN_MODEL) everywhere under /v2/models/.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bento.core.scoring import ScoringCore
from bento.errors import Reason, RequestError
from bento.http.body import read_body
from bento.http.responses import FastJSONResponse
from bento.v2 import inference
from bento.v2.tensors import HEADER_LENGTH, InferRequest, decode_request, encode_response


def _core(request: Request) -> ScoringCore:
    return request.app.state.core


def _binary_outputs(request: InferRequest, names: list[str]) -> set[str]:
    """The outputs to send in the binary extension: each output's `binary_data`, else the request's
    `binary_data_output`."""
    binary_all = bool(request.parameters.get("binary_data_output", False))
    if request.outputs is None:
        return set(names) if binary_all else set()
    binary = set()
    for output in request.outputs:
        parameters = output.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise RequestError(Reason.TENSOR, f"output {output['name']}: parameters must be an object")
        if parameters.get("binary_data", binary_all):
            binary.add(output["name"])
    return binary


async def infer(request: Request) -> Response:
    """`POST /v2/models/{name}[/versions/{v}]/infer`: read, decode, score, encode."""
    core = _core(request)
    core.check_model(request.path_params["model"], request.path_params.get("version"))
    predictor = core.model()
    settings = core.settings
    raw = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    decoded = decode_request(raw, request.headers.get(HEADER_LENGTH))
    matrix = inference.matrix_of(decoded, settings.max_infer_rows)
    names = inference.output_names(decoded, predictor)
    binary = _binary_outputs(decoded, names)
    scores = await core.score_together(matrix)
    payload: dict[str, Any] = {"model_name": settings.v2_model_name, "model_version": predictor.info.version}
    if decoded.id is not None:
        payload["id"] = decoded.id
    outputs = [(name, inference.DATATYPES[name], inference.output_of(scores, name)) for name in names]
    body, headers = encode_response(payload, outputs, binary)
    return Response(body, headers=headers)


def health_response(key: str, healthy: bool, **extra: str) -> Response:
    """200 when healthy, else 503; the status code is the answer.

    The body (`{"live": true}`, `{"ready": false}`, ...) is what KServe's own server returns: the
    kserve SDK reads it, tritonclient reads the status code only.
    """
    return FastJSONResponse({**extra, key: healthy}, status_code=200 if healthy else 503)


async def server_metadata(_: Request) -> Response:
    """`GET /v2`."""
    return FastJSONResponse(inference.server_metadata())


async def server_live(_: Request) -> Response:
    """`GET /v2/health/live`: live while the process answers."""
    return health_response("live", True)


async def server_ready(request: Request) -> Response:
    """`GET /v2/health/ready`: a model loaded and not draining."""
    return health_response("ready", _core(request).ready())


async def model_metadata(request: Request) -> Response:
    """`GET /v2/models/{name}[/versions/{v}]`."""
    core = _core(request)
    core.check_model(request.path_params["model"], request.path_params.get("version"))
    return FastJSONResponse(inference.model_metadata(core.settings, core.model()))


async def model_ready(request: Request) -> Response:
    """`GET /v2/models/{name}[/versions/{v}]/ready`."""
    core = _core(request)
    name = request.path_params["model"]
    core.check_model(name, request.path_params.get("version"))
    return health_response("ready", core.ready(), name=name)


ROUTES = [
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/health/live", server_live, methods=["GET"]),
    Route("/v2/health/ready", server_ready, methods=["GET"]),
    Route("/v2/models/{model}", model_metadata, methods=["GET"]),
    Route("/v2/models/{model}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{model}/infer", infer, methods=["POST"]),
    Route("/v2/models/{model}/versions/{version}", model_metadata, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/ready", model_ready, methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
]
