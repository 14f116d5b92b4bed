"""Open Inference Protocol (KServe V2) over gRPC: `inference.GRPCInferenceService` on the scoring core.

The messages and the service are the protocol's own, from the generated stubs `tritonclient[grpc]` ships
(Triton's service is a superset of the protocol's; the methods beyond the protocol answer UNIMPLEMENTED).
Inputs and outputs are those of V2 REST (bento/v2/rest.py), decoded into the same tensors (bento/v2/tensors.py)
and checked by the same code (bento/v2/inference.py), so every refusal carries the REST message; its status is
the reason's gRPC code (bento/errors.py). Outputs come back
as `raw_output_contents` when the request sent `raw_input_contents` (what tritonclient does), else typed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb

from bento.core.scoring import ScoringCore
from bento.errors import RequestError
from bento.http import auth
from bento.monitoring import metrics
from bento.v2 import inference
from bento.v2.tensors import (
    DTYPES,
    InferRequest,
    Tensor,
    element_count,
    from_binary,
    request_of,
    shaped,
    tensor_error,
    to_binary,
)

logger = logging.getLogger("readmission")
SERVICE = "inference.GRPCInferenceService"
DESCRIPTOR = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# The typed contents field of each datatype (FP16 has none: raw contents only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
PROTECTED = frozenset({"ModelMetadata", "ModelInfer"})  # as the REST routes under /v2/models/ (bento/http/auth.py)


def _parameters(parameters: Any) -> dict[str, Any]:
    """A protobuf map of InferParameter as plain values."""
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param") for key, value in parameters.items()
    }


def _input(tensor: Any, raw: bytes | None) -> Tensor:
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    count = element_count(name, datatype, shape)
    if raw is not None:
        if tensor.HasField("contents"):
            raise tensor_error(f"input {name}: has both typed contents and raw_input_contents; send one of them")
        data = from_binary(raw, datatype, count, name)
    else:
        field = CONTENTS_FIELD.get(datatype)
        if field is None:
            raise tensor_error(f"input {name}: {datatype} data must be sent as raw_input_contents")
        sent = [f for f, _ in tensor.contents.ListFields()]
        if any(f.name != field for f in sent):
            raise tensor_error(f"input {name}: {datatype} data belongs in contents.{field}, not {sent[0].name}")
        values = getattr(tensor.contents, field)
        data = np.array(list(values) if datatype == "BYTES" else values, dtype=DTYPES[datatype])
    return shaped(name, datatype, shape, data, _parameters(tensor.parameters))


def decode(request: Any) -> tuple[InferRequest, bool]:
    """The request as V2 tensors (the REST decoder's types) and whether it sent raw contents."""
    if not request.inputs:
        raise tensor_error("inputs: must be a non-empty list of tensors")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise tensor_error(f"raw_input_contents holds {len(raw)} entries for {len(request.inputs)} inputs")
    tensors = [_input(tensor, raw[i] if raw else None) for i, tensor in enumerate(request.inputs)]
    outputs = [{"name": output.name} for output in request.outputs] or None
    return request_of(request.id or None, _parameters(request.parameters), tensors, outputs), bool(raw)


def _tensor_metadata(entries: list[dict[str, Any]]) -> list[Any]:
    return [pb.ModelMetadataResponse.TensorMetadata(**entry) for entry in entries]


class InferenceServicer:
    """The protocol's six methods over one scoring core."""

    def __init__(self, core: ScoringCore) -> None:
        self.core = core

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Ready with a model loaded and not draining."""
        return pb.ServerReadyResponse(ready=self.core.ready())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """NOT_FOUND for another model or version; else whether it is ready."""
        self.core.check_model(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=self.core.ready())

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Name, version and extensions, as `GET /v2`."""
        return pb.ServerMetadataResponse(**inference.server_metadata())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Every input a client may send and the outputs, as `GET /v2/models/{name}`."""
        self.core.check_model(request.name, request.version or None)
        metadata = inference.model_metadata(self.core.settings, self.core.model())
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=_tensor_metadata(metadata["inputs"]),
            outputs=_tensor_metadata(metadata["outputs"]),
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Decode, score, encode."""
        core = self.core
        core.check_model(request.model_name, request.model_version or None)
        predictor = core.model()
        decoded, raw = decode(request)
        matrix = inference.matrix_of(decoded, core.settings.max_infer_rows)
        names = inference.output_names(decoded, predictor)
        scores = await core.score_together(matrix)
        response = pb.ModelInferResponse(model_name=core.settings.v2_model_name, model_version=predictor.info.version)
        if request.id:
            response.id = request.id
        for name in names:
            datatype, values = inference.DATATYPES[name], inference.output_of(scores, name)
            output = response.outputs.add(name=name, datatype=datatype, shape=list(values.shape))
            if raw:
                response.raw_output_contents.append(to_binary(values, datatype))
            elif datatype == "BYTES":
                output.contents.bytes_contents.extend(value.encode() for value in values.tolist())
            else:
                getattr(output.contents, CONTENTS_FIELD[datatype]).extend(values.tolist())
        return response


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def rpc_handler(method: str, handler: Handler, core: ScoringCore) -> Handler:
    """`handler` on the request's bytes, parsed here, with the token check, the call counted in flight and in the
    metrics, refusals as statuses (bytes that are no request message are INVALID_ARGUMENT, not grpcio's UNKNOWN)."""
    path = f"/{SERVICE}/{method}"
    protected = method in PROTECTED
    message = getattr(pb, DESCRIPTOR.methods_by_name[method].input_type.name)

    async def call(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        core.in_flight.begin()
        try:
            token = core.settings.api_token
            if protected and token is not None:
                auth.check(dict(context.invocation_metadata() or ()).get("authorization"), token)
            try:
                request = message.FromString(raw)
            except DecodeError as error:
                raise tensor_error(f"the request is not a {message.__name__} message") from error
            return await handler(request, context)
        except RequestError as error:
            code = grpc.StatusCode[error.grpc_code]
            metrics.FAILURES.labels(path, error.reason.value).inc()
            await context.abort(code, error.message)
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # a bug, never a client's mistake: no request content in the log
            code = grpc.StatusCode.INTERNAL
            logger.error("unexpected %s in %s", type(error).__name__, path)
            await context.abort(code, "internal error; see the service log")
        finally:
            core.in_flight.end()
            metrics.grpc_call(method, code.name, time.perf_counter() - started)

    return call
