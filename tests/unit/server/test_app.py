"""bento/server/app.py in-process: JSON errors for unknown paths and methods and for bugs, the bearer token in front of
the protected routes (checked before the body is read), the traffic metrics with bounded labels, and the lifespan
writing the prediction log out at shutdown."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from bento.http import auth
from bento.predictionlog.sqlite import SQLITE_FILE
from bento.server.app import endpoint_of
from tests.helpers import INFER, MODEL, RECORD, matrix_of, matrix_request, records, sqlite_ids

TOKEN = "s3cret-token"


def counted(endpoint: str, status: str) -> float:
    labels = {"endpoint": endpoint, "http_response_code": status}
    return REGISTRY.get_sample_value("bentoml_service_request_total", labels) or 0.0


def refused(endpoint: str, reason: str) -> float:
    labels = {"endpoint": endpoint, "reason": reason}
    return REGISTRY.get_sample_value("readmission_validation_failures_total", labels) or 0.0


def log_rows_dropped() -> float:
    return REGISTRY.get_sample_value("readmission_prediction_log_rows_total", {"outcome": "dropped"}) or 0.0


def test_unknown_paths_and_methods_answer_json(app):
    before = refused("other", "not_found")
    missing = app.get("/no/such/path")
    assert (missing.status_code, missing.json()) == (404, {"error": "no such endpoint"})
    assert missing.headers["content-type"] == "application/json"
    assert app.get("/predict/").status_code == 404  # no redirect to /predict
    wrong = app.get("/predict")
    assert wrong.status_code == 405 and "error" in wrong.json()
    assert refused("other", "not_found") == before + 2


def test_traffic_is_counted_per_route_template_never_per_raw_path(app):
    assert (
        endpoint_of({"path": f"/v2/models/{'x' * 50}/versions/9/infer"})
        == "/v2/models/{model}/versions/{version}/infer"
    )
    before = counted("/v2/models/{model}", "404"), counted("/predict", "200"), counted("other", "404")
    app.get("/v2/models/made-up-name")
    app.post("/predict", json=RECORD)
    app.get("/made-up-path")
    after = counted("/v2/models/{model}", "404"), counted("/predict", "200"), counted("other", "404")
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]


class Broken:
    """The tiny model, whose probabilities fail as a bug would."""

    def __init__(self, predictor) -> None:
        self.info, self.labels = predictor.info, predictor.labels

    def probabilities(self, matrix):
        raise RuntimeError("a bug with private data: patient 1234")


def test_a_bug_is_a_500_saying_nothing_of_it_and_the_connection_closes(app, tiny, caplog):
    app.app.state.core.predictor = Broken(tiny)
    answer = app.post("/predict", json=RECORD)
    assert answer.status_code == 500 and answer.headers["connection"] == "close"
    assert answer.json() == {"error": "internal error; see the service log"}
    assert "unexpected RuntimeError on /predict" in caplog.text and "1234" not in caplog.text


PROTECTED = [
    ("POST", "/predict", RECORD),
    ("POST", "/predict/batch", [RECORD]),
    ("POST", "/feedback", []),
    ("GET", "/performance", None),
    ("GET", f"/v2/models/{MODEL}", None),
    ("POST", INFER, matrix_request(matrix_of([RECORD]))),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_the_bearer_token_guards_the_prediction_routes(serve, method, path, body):
    client = serve(api_token=TOKEN)
    missing = client.request(method, path, json=body)
    assert missing.status_code == 401 and missing.json() == {"error": auth.MISSING}
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.request(method, path, json=body, headers={"authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401 and wrong.json() == {"error": auth.WRONG}
    right = client.request(method, path, json=body, headers={"authorization": f"bearer  {TOKEN} "})
    assert right.status_code != 401, right.text


@pytest.mark.parametrize("path", ["/health", "/v2", "/v2/health/ready", f"/v2/models/{MODEL}/ready", "/openapi.json"])
def test_probes_and_documents_need_no_token(serve, path):
    assert serve(api_token=TOKEN).get(path).status_code == 200


def test_the_token_is_checked_before_the_body_is_read(serve):
    client = serve(api_token=TOKEN, max_body_bytes=100)
    answer = client.post("/predict/batch", json=[RECORD] * 20)  # over the body limit: 413 if it were read
    assert answer.status_code == 401


def test_the_lifespan_writes_the_queued_predictions_out_at_shutdown(serve, tmp_path):
    client = serve()
    core = client.app.state.core
    ids = [p["prediction_id"] for p in client.post("/predict/batch", json=records(30, seed=51)).json()["predictions"]]
    client.__exit__(None, None, None)  # the lifespan ends: the log is closed, its queue written
    assert set(ids) <= sqlite_ids(tmp_path / SQLITE_FILE)
    dropped = log_rows_dropped()
    core.score(matrix_of(records(2, seed=52)))  # the closed log is no longer subscribed: nothing is handed to it
    assert log_rows_dropped() == dropped
