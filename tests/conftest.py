"""Shared fixtures: the real UCI file where the team provides it, synthetic samples otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import sample_data, servers

REPO = Path(__file__).resolve().parents[1]
SHARED_ZIP = REPO.parent / "shared" / "data" / "dataset_diabetes.zip"


@pytest.fixture(scope="session")
def uci_zip() -> Path:
    """The real UCI archive: READMISSION_DATA, else ../shared/data/; skips where absent."""
    candidate = Path(os.environ.get("READMISSION_DATA") or SHARED_ZIP)
    if not candidate.is_file():
        pytest.skip(f"the UCI data set is not at {candidate} (set READMISSION_DATA to the zip or CSV)")
    return candidate


def train_into(home: Path, data_file: Path, patch: pytest.MonkeyPatch, **options) -> dict:
    """Point READMISSION_HOME at `home` (an embedded SQLite MLflow store) and train there once."""
    from training import train
    from training.settings import TrainingSettings

    patch.setenv("READMISSION_HOME", str(home))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = TrainingSettings.from_env()
    registered = train.run(str(data_file), settings, **options)
    return {"home": home, "settings": settings, "registered": registered, "data": data_file}


@pytest.fixture(scope="session")
def real_champion(uci_zip, tmp_path_factory):
    """A champion trained on the real data into a fresh SQLite MLflow store (about a minute)."""
    home = tmp_path_factory.mktemp("real-mlflow")
    with pytest.MonkeyPatch.context() as patch:
        return train_into(home, uci_zip, patch, model_card_path=home / "model-card.md")


@pytest.fixture(scope="session")
def champion_store(request, tmp_path_factory):
    """An MLflow store holding a champion: the real-data one where the file exists, else a synthetic one."""
    try:
        return request.getfixturevalue("real_champion")
    except pytest.skip.Exception:
        home = tmp_path_factory.mktemp("synthetic-mlflow")
        with pytest.MonkeyPatch.context() as patch:
            return train_into(home, sample_data.write_csv(home, count=2000), patch, verify=False, model_card_path=None)


@pytest.fixture(scope="module")
def local(bento_home):
    """The served model loaded in-process, to compare with what comes over HTTP."""
    from bento.predictor import Predictor

    return Predictor.load(bento_home["model_dir"], bento_home["tag"])


@pytest.fixture(scope="module")
def client(service):
    """An HTTP client of the shared service."""
    import httpx

    with httpx.Client(base_url=service.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def bento_home(champion_store, tmp_path_factory):
    """A BentoML home holding the imported champion (its own, so Prometheus folders are not shared)."""
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {**os.environ, **bentoml_env(home), "READMISSION_HOME": str(champion_store["home"])}
    env.pop("MLFLOW_TRACKING_URI", None)
    readmission = str(Path(sys.executable).parent / "readmission")
    done = subprocess.run([readmission, "import"], env=env, capture_output=True, text=True, check=True)
    tag = done.stdout.strip().rsplit(" ", 1)[-1]
    return {"home": home, "tag": tag, "model_dir": home / "models" / "readmission" / tag.split(":")[1]}


def bentoml_env(home: Path) -> dict[str, str]:
    """Environment of a test BentoML server: its own home, no telemetry."""
    # READMISSION_API_TOKEN empty: the shared service has no bearer token whatever the developer's shell holds
    # (tests/test_auth.py starts its own service with one).
    return {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": str(REPO),
        "READMISSION_API_TOKEN": "",
        # no gRPC unless a test asks for it on a port of its own (`grpc_env`): workers share a gRPC port
        # through SO_REUSEPORT, so two test servers on the default port would answer each other's calls
        "READMISSION_GRPC_PORT": "0",
    }


def grpc_env() -> tuple[dict[str, str], str]:
    """The environment of a test server with gRPC on a free loopback port, and that address."""
    port = servers.free_port()
    return {"READMISSION_GRPC_PORT": str(port), "READMISSION_GRPC_HOST": "127.0.0.1"}, f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def service(bento_home, tmp_path_factory):
    """`bentoml serve` of the source tree on a free loopback port, ready, with gRPC on another (`.grpc`)."""
    port = servers.free_port()
    log = tmp_path_factory.mktemp("service") / "service.log"
    command = [str(Path(sys.executable).parent / "bentoml"), "serve", "bento.service:ReadmissionService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    extra, address = grpc_env()
    server = servers.start(command, port, bentoml_env(bento_home["home"]) | extra, log)
    server.grpc = address
    yield server
    server.stop()


_FIGURES: dict[str, str] = {}


@pytest.fixture
def figure(request):
    """Record a measured figure (name, value); `make test` prints them all at the end, for the README.

    A figure recorded again under the same test and name replaces the earlier value (running totals).
    """

    def record(name: str, value: object) -> None:
        _FIGURES[f"{request.node.originalname}: {name}"] = str(value)

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the figures the tests measured (soak, fault recovery, fuzzing) under one heading."""
    if _FIGURES:
        terminalreporter.section("measured figures")
        for name, value in _FIGURES.items():
            terminalreporter.write_line(f"{name} = {value}")
