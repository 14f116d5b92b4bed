"""Shared fixtures: the real UCI file where the team provides it, synthetic samples otherwise.

What tests share that is not a fixture is in tests/helpers.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import postgres_server, sample_data, servers
from tests.helpers import bentoml_env, grpc_env, package_index_problem, train_into
from training.settings import data_file


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `package_index` skip, with the reason, where the live package index cannot be reached."""
    if item.get_closest_marker("package_index") is not None:
        problem = package_index_problem()
        if problem is not None:
            pytest.skip(problem)


@pytest.fixture(scope="session")
def uci_zip() -> Path:
    """The real UCI archive: READMISSION_DATA, else ../shared/data/; skips where absent."""
    found = data_file()
    if found is None:
        pytest.skip("the UCI data set is neither at READMISSION_DATA nor in ../shared/data (set READMISSION_DATA)")
    return found


@pytest.fixture(scope="session")
def real_champion(uci_zip, tmp_path_factory):
    """A champion trained on the real data into a fresh SQLite MLflow store (about a minute)."""
    home = tmp_path_factory.mktemp("real-mlflow")
    with pytest.MonkeyPatch.context() as patch:
        # no spread over other seeds (tests/training/test_training.py checks it): two more fits would double the minute
        return train_into(home, uci_zip, patch, model_card_path=home / "model-card.md", extra_seeds=0)


@pytest.fixture(scope="session")
def champion_store(request, tmp_path_factory):
    """An MLflow store holding a champion: the real-data one where the file exists, else a synthetic one."""
    try:
        return request.getfixturevalue("real_champion")
    except pytest.skip.Exception:
        home = tmp_path_factory.mktemp("synthetic-mlflow")
        with pytest.MonkeyPatch.context() as patch:
            csv = sample_data.write_csv(home, count=2000)
            return train_into(home, csv, patch, verify=False, model_card_path=None, extra_seeds=0)


@pytest.fixture(scope="module")
def local(bento_home):
    """The served model loaded in-process, to compare with what comes over HTTP."""
    from bento.model.predictor import Predictor

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


@pytest.fixture(scope="session")
def service(bento_home, tmp_path_factory):
    """`bentoml serve` of the source tree on a free loopback port, ready, with gRPC on another (`.grpc`)."""
    port = servers.free_port()
    log = tmp_path_factory.mktemp("service") / "service.log"
    command = [str(Path(sys.executable).parent / "bentoml"), "serve", "bento.service:ReadmissionService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    extra, address = grpc_env()
    extra["READMISSION_MONITOR_SECONDS"] = "1"  # live performance follows the feedback the tests send at once
    server = servers.start(command, port, bentoml_env(bento_home["home"]) | extra, log)
    server.grpc = address
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (tests/postgres_server.py) for the session; skips where it is not installed."""
    problem = postgres_server.missing()
    if problem is not None:
        pytest.skip(problem)
    server = postgres_server.start_server()
    yield server
    server.destroy()


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
