"""V2 inference through the KServe SDK's REST and gRPC clients; run in its own venv (kserve pins pandas<3).

Usage: python kserve_client_check.py BASE_URL MODEL_NAME [GRPC_ADDRESS] < request.json
The request holds {"matrix": [[...], ...] (null = missing), "fields": [{"name", "datatype", "values"}, ...]}.
Prints one JSON object: the answer of each way of calling the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

NUMPY_TYPES = {"FP64": np.float64, "INT64": np.int64, "BYTES": np.object_}


def _outputs(response: Any) -> dict[str, list[Any]]:
    """Each output's values; BYTES (the prediction ids) as text."""
    return {
        output.name: [v.decode() if isinstance(v, bytes) else v for v in output.as_numpy().tolist()]
        for output in response.outputs
    }


async def _check(base_url: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    matrix = np.array([[np.nan if v is None else v for v in row] for row in request["matrix"]], dtype=np.float32)
    report: dict[str, Any] = {}
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=30)) as client:
        report["server_live"] = await client.is_server_live(base_url)
        report["server_ready"] = await client.is_server_ready(base_url)
        report["model_ready"] = await client.is_model_ready(base_url, model)
        for mode, binary in (("json", False), ("binary", True)):
            tensor = InferInput("input-0", list(matrix.shape), "FP32")
            tensor.set_data_from_numpy(matrix, binary_data=binary)
            answer = await client.infer(base_url, InferRequest(model, [tensor], request_id=f"kserve-{mode}"), model)
            report[mode] = {"id": answer.id, "model_name": answer.model_name, "outputs": _outputs(answer)}
        tensor = InferInput("input-0", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix, binary_data=False)
        selected = InferRequest(
            model,
            [tensor],
            parameters={"binary_data_output": True},
            request_outputs=[RequestedOutput("probability", {"binary_data": True})],
        )
        report["binary_output"] = {"outputs": _outputs(await client.infer(base_url, selected, model))}
        tensors = []
        for field in request["fields"]:
            values = field["values"]
            if field["datatype"] == "BYTES":
                array = np.array([(v or "").encode() for v in values], dtype=np.object_)
            else:
                array = np.array([np.nan if v is None else v for v in values], dtype=NUMPY_TYPES[field["datatype"]])
            tensor = InferInput(field["name"], [len(values)], field["datatype"])
            tensor.set_data_from_numpy(array, binary_data=field["datatype"] == "BYTES")
            tensors.append(tensor)
        fields = InferRequest(model, tensors, parameters={"content_type": "pd"})
        report["pd"] = {"outputs": _outputs(await client.infer(base_url, fields, model))}
    return report


async def _check_grpc(address: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    matrix = np.array([[np.nan if v is None else v for v in row] for row in request["matrix"]], dtype=np.float32)
    client = InferenceGRPCClient(address, timeout=30)
    try:
        report: dict[str, Any] = {
            "server_live": await client.is_server_live(),
            "server_ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready(model),
        }
        tensor = InferInput("input-0", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix, binary_data=True)  # raw_input_contents
        answer = await client.infer(InferRequest(model, [tensor], request_id="kserve-grpc"))
        report["infer"] = {"id": answer.id, "model_name": answer.model_name, "outputs": _outputs(answer)}
        typed = InferInput("input-0", list(matrix.shape), "FP32")
        typed.set_data_from_numpy(matrix, binary_data=False)  # typed fp32_contents
        answer = await client.infer(InferRequest(model, [typed], request_id="kserve-grpc-typed"))
        report["typed"] = {"id": answer.id, "outputs": _outputs(answer)}
    finally:
        await client.close()
    return report


def main() -> None:
    """Run every check against argv[1] (REST) and argv[3] (gRPC, if given); print the answers as JSON."""
    base_url, model = sys.argv[1], sys.argv[2]
    request = json.load(sys.stdin)
    report = asyncio.run(_check(base_url, model, request))
    if len(sys.argv) > 3:
        report["grpc"] = asyncio.run(_check_grpc(sys.argv[3], model, request))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
