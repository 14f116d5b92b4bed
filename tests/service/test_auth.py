"""The optional bearer token (bento/http/auth.py): a real service started with READMISSION_API_TOKEN, its clients
(tritonclient, the Streamlit UI's client, the Locust user), and the OpenAPI document."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bento import features
from bento.errors import RequestError
from bento.http import auth
from bento.openapi import document
from bento.settings import ServiceSettings
from tests import servers
from tests.helpers import MODEL, RECORD, SEED_EXAMPLE, bentoml_env, grpc_env, poll, scrape
from ui.client import Client, ServiceError
from ui.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TOKEN = secrets.token_hex(24)  # random per run: it can only reach the log through the service
ROW = features.vector_from_encoded(SEED_EXAMPLE).tolist()
DATA = [None if math.isnan(value) else value for value in ROW]  # JSON null: missing (the ICD-9 code columns)
INFER = {"inputs": [{"name": "input-0", "shape": [1, len(ROW)], "datatype": "FP32", "data": DATA}]}
# (method, path, JSON body) of every protected operation; {v} is the served model version
PROTECTED = [
    ("POST", "/predict", SEED_EXAMPLE),
    ("POST", "/predict/batch", [RECORD, SEED_EXAMPLE]),
    ("POST", f"/v2/models/{MODEL}/infer", INFER),
    ("POST", f"/v2/models/{MODEL}/versions/{{v}}/infer", INFER),
    ("GET", f"/v2/models/{MODEL}", None),
    ("GET", f"/v2/models/{MODEL}/versions/{{v}}", None),
    ("GET", "/performance", None),
]
OPEN = [
    *("/livez", "/readyz", "/healthz", "/health", "/v2", "/v2/health/live", "/v2/health/ready"),
    *(f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/{{v}}/ready", "/openapi.json", "/docs"),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the decision and the comparison, in-process -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/predict", True),
        ("/predict/batch", True),
        ("/feedback", True),
        ("/performance", True),
        ("/v2/models/readmission", True),
        ("/v2/models/readmission/infer", True),
        ("/v2/models/readmission/versions/3", True),
        ("/v2/models/readmission/versions/3/infer", True),
        ("/v2/models/{model}/versions/{version}/infer", True),
        ("/v2/models/readmission/ready/infer", True),
        ("/v2/models/readmission/ready", False),
        ("/v2/models/readmission/versions/3/ready", False),
        ("/v2/models/{model}/ready", False),
        ("/v2", False),
        ("/v2/health/live", False),
        ("/v2/health/ready", False),
        ("/health", False),
        ("/livez", False),
        ("/readyz", False),
        ("/healthz", False),
        ("/metrics", False),
        ("/openapi.json", False),
    ],
)
def test_which_paths_need_the_token(path, protected):
    assert auth.protects(path) is protected


def test_check_accepts_only_the_exact_bearer_token():
    auth.check(None, None)  # no token configured: every request passes
    auth.check("Bearer anything", None)
    auth.check(f"Bearer {TOKEN}", SecretStr(TOKEN))
    auth.check(f"bearer   {TOKEN} ", SecretStr(TOKEN))  # the scheme is case-insensitive (RFC 7235)
    for header, message in [
        (None, auth.MISSING),
        ("", auth.MISSING),
        ("Bearer", auth.MISSING),
        (f"Basic {TOKEN}", auth.MISSING),
        (TOKEN, auth.MISSING),
        (f"Bearer {TOKEN}x", auth.WRONG),
        (f"Bearer {TOKEN[:-1]}", auth.WRONG),
        ("Bearer é", auth.WRONG),
    ]:
        with pytest.raises(RequestError) as refused:
            auth.check(header, SecretStr(TOKEN))
        assert refused.value.status == 401 and refused.value.reason.value == "unauthorized"
        assert refused.value.message == message and TOKEN not in refused.value.message


def test_the_token_is_read_from_the_environment_and_kept_out_of_repr(monkeypatch):
    monkeypatch.setenv("READMISSION_API_TOKEN", f" {TOKEN}\n")
    settings = ServiceSettings.from_env()
    assert settings.api_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings) and TOKEN not in settings.model_dump_json()
    monkeypatch.setenv("READMISSION_API_TOKEN", "")
    assert ServiceSettings.from_env().api_token is None
    monkeypatch.delenv("READMISSION_API_TOKEN")
    assert ServiceSettings.from_env().api_token is None


def test_the_openapi_document_has_security_only_with_a_token():
    plain = document.document(ServiceSettings())
    assert "securitySchemes" not in plain["components"]  # what tests/service/test_fuzz.py fuzzes: no token configured
    assert not any("security" in op for item in plain["paths"].values() for op in item.values() if isinstance(op, dict))
    secured = document.document(ServiceSettings(api_token=TOKEN))
    assert secured["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert TOKEN not in json.dumps(secured)
    for path, item in secured["paths"].items():
        for method in ("get", "post"):
            if method in item:
                operation = item[method]
                assert ("security" in operation) is auth.protects(path), f"{method} {path}"
                if auth.protects(path):
                    assert operation["security"] == [{"bearerAuth": []}]
                    assert "401" in operation["responses"]


# --- a real service with a token ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(bento_home, tmp_path_factory) -> Iterator[servers.Server]:
    """`bentoml serve` of the source tree with READMISSION_API_TOKEN, in its own BentoML home (own metrics)."""
    folder = tmp_path_factory.mktemp("auth-service")
    home = folder / "bentoml"
    shutil.copytree(bento_home["home"], home, ignore=shutil.ignore_patterns("prometheus_multiproc_dir", "tmp"))
    port = servers.free_port()
    command = [str(Path(sys.executable).parent / "bentoml"), "serve", "bento.service:ReadmissionService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    extra, address = grpc_env()
    env = {**bentoml_env(home), **extra, "READMISSION_API_TOKEN": TOKEN, "READMISSION_ACCESS_LOG": "true"}
    server = servers.start(command, port, env, folder / "log")  # the access log on: the token must not reach it
    server.grpc = address
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(secured) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured.url, timeout=30) as client:
        yield client


def request(http: httpx.Client, method: str, path: str, body, version: str, headers=None) -> httpx.Response:
    return http.request(method, path.format(v=version), json=body, headers=headers)


def failures(server: servers.Server, endpoint: str, reason: str) -> float:
    """readmission_validation_failures_total{endpoint, reason} as the service exposes it (0 when absent)."""
    for family in text_string_to_metric_families(scrape(server)):
        if family.name == "readmission_validation_failures":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == {"endpoint": endpoint, "reason": reason}:
                    return sample.value
    return 0.0


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
@pytest.mark.parametrize("headers", [None, bearer("wrong-" + TOKEN[:8]), {"Authorization": f"Basic {TOKEN}"}],
                         ids=["no token", "wrong token", "basic scheme"])  # fmt: skip
def test_protected_routes_refuse_without_the_token(http, local, method, path, body, headers):
    response = request(http, method, path, body, local.info.version, headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert ("bearer token is required" in error) if headers is None else ("bearer token" in error)
    assert TOKEN not in response.text and TOKEN[:8] not in response.text


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_protected_routes_answer_with_the_token(http, local, method, path, body):
    response = request(http, method, path, body, local.info.version, bearer(TOKEN))
    assert response.status_code == 200, response.text


@pytest.mark.slow
def test_the_token_gives_the_in_process_predictions(http, local):
    expected = float(local.probabilities(np.asarray([ROW], dtype=np.float32))[0])
    answer = http.post("/predict", json=SEED_EXAMPLE, headers=bearer(TOKEN)).json()
    assert answer["probability"] == pytest.approx(expected, abs=1e-6)
    batch = http.post("/predict/batch", json=[SEED_EXAMPLE, RECORD], headers=bearer(TOKEN)).json()
    assert batch["predictions"][0]["probability"] == pytest.approx(expected, abs=1e-6)
    infer = http.post(f"/v2/models/{MODEL}/infer", json=INFER, headers=bearer(TOKEN)).json()
    (probability,) = [o for o in infer["outputs"] if o["name"] == "probability"]
    assert probability["data"][0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_feedback_needs_the_token(http):
    answer = http.post("/predict", json=SEED_EXAMPLE, headers=bearer(TOKEN)).json()
    body = [{"prediction_id": answer["prediction_id"], "readmitted_within_30_days": False}]
    for headers in (None, bearer("wrong-" + TOKEN[:8])):
        refused = http.post("/feedback", json=body, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", refused.text
    accepted = http.post("/feedback", json=body, headers=bearer(TOKEN))
    assert accepted.json() == {"recorded": 1, "unchanged": 0}, accepted.text


@pytest.mark.slow
@pytest.mark.parametrize("path", OPEN)
def test_probes_health_metrics_and_openapi_stay_open(http, local, path):
    response = http.get(path.format(v=local.info.version))
    assert response.status_code == 200, response.text


@pytest.mark.slow
def test_refusals_are_counted_as_unauthorized(http, secured):
    before = failures(secured, "/predict", "unauthorized")
    for headers in (None, bearer("nope")):
        assert http.post("/predict", json=SEED_EXAMPLE, headers=headers).status_code == 401
    poll(lambda: failures(secured, "/predict", "unauthorized") == before + 2, 10, "the two refusals counted")
    metrics = scrape(secured)
    assert 'http_response_code="401"' in metrics  # the request metrics see the refusals too
    assert TOKEN not in metrics


@pytest.mark.slow
def test_openapi_of_the_secured_service_declares_the_scheme(http):
    document = http.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["paths"]["/predict"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in document["paths"]["/v2/models/{model}/ready"]["get"]


@pytest.mark.slow
def test_tritonclient_sends_the_token_in_headers(secured, local):
    triton = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=urlsplit(secured.url).netloc, network_timeout=30)
    try:
        matrix = np.asarray([ROW, ROW], dtype=np.float32)
        tensor = triton.InferInput("input-0", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix)
        assert client.is_model_ready(MODEL)  # readiness needs no token
        with pytest.raises(InferenceServerException, match="bearer token is required"):
            client.infer(MODEL, [tensor])
        result = client.infer(MODEL, [tensor], headers=bearer(TOKEN))
        np.testing.assert_allclose(result.as_numpy("probability"), local.probabilities(matrix), atol=1e-6)
        assert client.get_model_metadata(MODEL, headers=bearer(TOKEN))["name"] == MODEL
    finally:
        client.close()


LOCUST_USER = textwrap.dedent(
    """
    import json
    import sys
    from locust.env import Environment
    from loadtest import locustfile

    class Pool:
        records = ()
        def sample(self, rng):
            return json.loads(sys.argv[2])

    locustfile.POOL = Pool()
    locustfile.ReadmissionClient.host = sys.argv[1]
    env = Environment(user_classes=[locustfile.ReadmissionClient], host=sys.argv[1])
    seen = []
    env.events.request.add_listener(lambda **kw: seen.append((kw["response"].status_code, kw["exception"])))
    locustfile.ReadmissionClient(env).predict_clinical()
    print(seen[0][0], "failed" if seen[0][1] else "ok")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("token", "expected"), [(TOKEN, "200 ok"), ("", "401 failed")], ids=["token", "none"])
def test_the_locust_user_sends_the_token_from_the_environment(secured, token, expected):
    env = {**os.environ, "PYTHONPATH": str(REPO), "READMISSION_API_TOKEN": token}
    command = [sys.executable, "-c", LOCUST_USER, secured.url, json.dumps(RECORD)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == expected
    assert TOKEN not in done.stdout + done.stderr


@pytest.mark.slow
def test_the_token_never_appears_in_the_service_log(secured, http):
    http.post("/predict", json=SEED_EXAMPLE, headers=bearer(TOKEN))
    http.post("/predict", json=SEED_EXAMPLE, headers=bearer(TOKEN + "x"))
    log = secured.log_text()
    assert "path=/predict" in log and "status=401" in log  # the access log was written, refusals included
    assert TOKEN not in log


# --- gRPC: the `authorization` metadata -------------------------------------------------------------------


def test_grpc_inference_and_model_metadata_need_the_token(secured):
    import grpc
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    rows = features.encode([features.validate(RECORD)]).astype(np.float32)
    tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    client = triton.InferenceServerClient(secured.grpc)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("readmission")
        for headers, message in ((None, auth.MISSING), ({"authorization": "Bearer wrong"}, auth.WRONG)):
            for call in (
                lambda h=headers: client.infer("readmission", [tensor], headers=h),
                lambda h=headers: client.get_model_metadata("readmission", headers=h),
            ):
                with pytest.raises(InferenceServerException) as caught:
                    call()
                assert caught.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
                assert caught.value.message() == message
        answer = client.infer("readmission", [tensor], headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.as_numpy("probability").shape == (1,)
    finally:
        client.close()
    assert TOKEN not in secured.log_text()


# --- the Streamlit UI's client, against the real service with a token ------------------------------------------


@pytest.mark.slow
def test_ui_client_sends_the_token_from_the_environment(monkeypatch, secured):
    monkeypatch.setenv("READMISSION_API_URL", secured.url)
    monkeypatch.setenv("READMISSION_API_TOKEN", TOKEN)
    settings = Settings.from_env()
    assert TOKEN not in repr(settings)
    assert 0 < Client(settings).predict(RECORD)["probability"] < 1
    assert len(Client(settings).predict_batch([RECORD, SEED_EXAMPLE])["predictions"]) == 2
    monkeypatch.delenv("READMISSION_API_TOKEN")
    with pytest.raises(ServiceError, match="API token"):
        Client(Settings.from_env()).predict(RECORD)


@pytest.mark.slow
def test_ui_client_says_the_token_was_refused(secured):
    with pytest.raises(ServiceError, match="API token") as refused:
        Client(Settings(api_url=secured.url, api_token="s3cr3t")).predict(RECORD)
    assert "s3cr3t" not in str(refused.value)
