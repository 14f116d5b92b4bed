"""KServe's ModelServer with an xgboost `kserve.Model`, as kserve's xgbserver does it.

Loads the booster (nthread=1), predicts on an `xgb.DMatrix` of the V2 input and answers a V2 response
via kserve's own helpers. The one difference: the V2 output is named "probability" (as ours and the floor
name it) instead of xgbserver's "output-0", so that the benchmark's binary request, which asks for output
"probability" as JSON, is the same bytes for every server. Binds 127.0.0.1 only (KServe hard-codes 0.0.0.0)
and runs without gRPC.
Run with the KServe venv's python:
    kserve_xgb.py --model_name readmission --model_file model.ubj --http_port 8080 --workers 1
"""

from __future__ import annotations

import argparse

import uvicorn
from grpc.aio import _server as grpc_aio_server

_config_init = uvicorn.Config.__init__


def _loopback_config(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    kwargs["host"] = "127.0.0.1"
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback_config  # before kserve builds its uvicorn.Config

_add_insecure_port = grpc_aio_server.Server.add_insecure_port


def _loopback_port(self, address: str) -> int:  # type: ignore[no-untyped-def]
    return _add_insecure_port(self, address.replace("[::]:", "127.0.0.1:", 1))


grpc_aio_server.Server.add_insecure_port = _loopback_port  # kserve's GRPCServer listens on [::]:<port>

import kserve  # noqa: E402
import xgboost as xgb  # noqa: E402
from kserve.errors import InferenceError  # noqa: E402
from kserve.protocol.infer_type import InferResponse  # noqa: E402
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402

OUTPUT_NAME = "probability"


class XGBoostModel(kserve.Model):
    """An xgboost booster behind KServe's V1/V2 data plane."""

    def __init__(self, name: str, model_file: str, nthread: int) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.nthread = nthread
        self.ready = False

    def load(self) -> bool:
        """Load the booster, single-threaded."""
        self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=self.model_file)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None, response_headers=None):  # type: ignore[no-untyped-def]
        """Predict on a DMatrix of the request's input; a response of the request's protocol."""
        try:
            dmatrix = xgb.DMatrix(get_predict_input(payload), nthread=self.nthread)
            result = self._booster.predict(dmatrix)
            response = get_predict_response(payload, result, self.name)
            if isinstance(response, InferResponse):
                for output in response.outputs:
                    output._name = OUTPUT_NAME  # no public setter; before the requested outputs are matched
            return response
        except Exception as error:
            raise InferenceError(str(error)) from error


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--nthread", type=int, default=1)
    args, _ = parser.parse_known_args()
    model = XGBoostModel(args.model_name, args.model_file, args.nthread)
    model.load()
    kserve.ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers, enable_grpc=args.enable_grpc
    ).start([model])
