"""The floor: the least a Python V2 server can do per request (bare Starlette, no middleware).

Parses the V2 JSON body (one FP32/FP64 tensor [N, F]) with stdlib json, or with orjson (BENCH_JSON=orjson,
as our service, MLServer and KServe do), scores single-threaded and answers a minimal V2 response (JSON).
The scoring backend: xgboost `inplace_predict` on the booster BENCH_MODEL (default), or with
BENCH_BACKEND=compiled the compiled trees our service serves (`bento.model.compiled.CompiledTrees` of the `compiled/`
folder beside BENCH_MODEL; needs the project root on PYTHONPATH; BENCH_COLUMNS features).
A request with the binary tensor data extension (header `Inference-Header-Content-Length`, one tensor
whose raw little-endian bytes follow the JSON header) is taken too.
Run: `BENCH_MODEL=path/model.ubj uvicorn floor_app:app`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if os.environ.get("BENCH_JSON") == "orjson":  # the floor with a fast parser (ours, MLServer and KServe use orjson)
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
else:
    loads, dumps = json.loads, lambda value: json.dumps(value, separators=(",", ":")).encode()

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "readmission")
MODEL = Path(os.environ["BENCH_MODEL"])
DTYPES = {"FP32": "<f4", "FP64": "<f8"}

if os.environ.get("BENCH_BACKEND", "xgboost") == "compiled":
    from bento.model.compiled import CompiledTrees

    _trees = CompiledTrees.load(MODEL.parent, int(os.environ.get("BENCH_COLUMNS", "263")))
    predict = _trees.probabilities
else:
    import xgboost as xgb

    _booster = xgb.Booster(model_file=str(MODEL))
    _booster.set_param({"nthread": 1})

    def predict(matrix: np.ndarray) -> np.ndarray:
        """Probabilities from xgboost, single-threaded."""
        return _booster.inplace_predict(matrix, validate_features=False).astype(np.float32)


async def infer(request: Request) -> Response:
    """`POST /v2/models/{name}/infer`."""
    raw = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    if header_length is None:
        tensor = loads(raw)["inputs"][0]
        matrix = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    else:  # binary tensor data extension: the raw tensor follows the JSON header
        split = int(header_length)
        tensor = loads(raw[:split])["inputs"][0]
        dtype = np.dtype(DTYPES[tensor["datatype"]])
        count = tensor["parameters"]["binary_data_size"] // dtype.itemsize
        matrix = np.frombuffer(raw, dtype, count, split).astype(np.float32).reshape(tensor["shape"])
    probabilities = predict(matrix)
    payload = {
        "model_name": MODEL_NAME,
        "outputs": [
            {"name": "probability", "datatype": "FP32", "shape": [len(probabilities)], "data": probabilities.tolist()}
        ],
    }
    return Response(dumps(payload), media_type="application/json")


async def ready(_: Request) -> Response:
    """`GET /v2/health/ready`: the model is loaded at import."""
    return Response(status_code=200)


app = Starlette(
    routes=[
        Route(f"/v2/models/{MODEL_NAME}/infer", infer, methods=["POST"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
    ]
)
