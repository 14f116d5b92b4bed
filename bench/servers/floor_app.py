"""The floor: the least a Python V2 server can do per request (bare Starlette, no middleware).

Parses the V2 JSON body (one FP32/FP64 tensor [N, F]) with stdlib json as our service does, or with
orjson (BENCH_JSON=orjson, as MLServer and KServe do), calls `inplace_predict` single-threaded and
answers a minimal V2 response. Run: `BENCH_MODEL=path/model.ubj uvicorn floor_app:app`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import xgboost as xgb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if os.environ.get("BENCH_JSON") == "orjson":  # the floor with a fast parser (MLServer and KServe use orjson)
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
else:
    loads, dumps = json.loads, lambda value: json.dumps(value, separators=(",", ":")).encode()

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "readmission")
booster = xgb.Booster(model_file=os.environ["BENCH_MODEL"])
booster.set_param({"nthread": 1})


async def infer(request: Request) -> Response:
    """`POST /v2/models/{name}/infer`."""
    body = loads(await request.body())
    tensor = body["inputs"][0]
    matrix = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    probabilities = booster.inplace_predict(matrix, validate_features=False).astype(np.float32)
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
