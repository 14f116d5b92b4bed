"""Shared fixtures: the real UCI file where the team provides it, synthetic samples otherwise.

What tests share that is not a fixture is in tests/helpers.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from tests import postgres_server, sample_data, servers
from tests.helpers import REPO, bentoml_env, grpc_env, oci_script, package_index_problem, train_into
from training.registry import Registered
from training.settings import TrainingSettings, data_file


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


# The xdist worker running this session ("gw0", "gw1", ...), empty without xdist.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _once(tmp_path_factory, name: str, make: Callable[[Path], dict]) -> dict:
    """`make(folder)` once for the whole run, its JSON answer read back by every other caller.

    Without xdist it simply runs in a fresh temporary folder. Under xdist each worker has its
    own session fixtures, so the first worker to get here makes it in a folder beside every worker's temporary root
    (pytest-xdist's documented FileLock pattern), and the others wait for the lock and read what it wrote.
    """
    if not _XDIST_WORKER:
        return make(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    done = shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.is_file():
            folder = shared / name
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way left it
            folder.mkdir()
            done.write_text(json.dumps(make(folder)))
        return json.loads(done.read_text())


def _store(answer: dict) -> dict:
    """A champion store as JSON (paths, the Registered version), to be shared between xdist workers."""
    return {"home": str(answer["home"]), "registered": dataclasses.asdict(answer["registered"]),
            "data": str(answer["data"])}  # fmt: skip


def _champion(shared: dict) -> dict:
    """The fixture's value from the shared JSON: the settings as `train_into` made them, for the same home."""
    home = Path(shared["home"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("READMISSION_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = TrainingSettings.from_env()
    return {"home": home, "settings": settings, "registered": Registered(**shared["registered"]),
            "data": Path(shared["data"])}  # fmt: skip


@pytest.fixture(scope="session")
def real_champion(uci_zip, tmp_path_factory):
    """A champion trained on the real data into a fresh SQLite MLflow store (about a minute, once a run)."""

    def train(home: Path) -> dict:
        with pytest.MonkeyPatch.context() as patch:
            # no spread over other seeds (tests/training/test_training.py checks it): two more fits would double
            # the minute
            trained = train_into(home, uci_zip, patch, model_card_path=home / "model-card.md", extra_seeds=0)
        return _store(trained)

    return _champion(_once(tmp_path_factory, "real-mlflow", train))


@pytest.fixture(scope="session")
def champion_store(request, tmp_path_factory):
    """An MLflow store holding a champion: the real-data one where the file exists, else a synthetic one."""
    try:
        return request.getfixturevalue("real_champion")
    except pytest.skip.Exception:

        def train(home: Path) -> dict:
            with pytest.MonkeyPatch.context() as patch:
                csv = sample_data.write_csv(home, count=2000)
                trained = train_into(home, csv, patch, verify=False, model_card_path=None, extra_seeds=0)
            return _store(trained)

        return _champion(_once(tmp_path_factory, "synthetic-mlflow", train))


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
    """A BentoML home holding the imported champion (its own, so Prometheus folders are not shared).

    Imported once a run; under xdist each worker serves from its own copy, since a server writes its prediction log
    and Prometheus files into its home.
    """

    def imported(home: Path) -> dict:
        env = {**os.environ, **bentoml_env(home), "READMISSION_HOME": str(champion_store["home"])}
        env.pop("MLFLOW_TRACKING_URI", None)
        readmission = str(Path(sys.executable).parent / "readmission")
        done = subprocess.run([readmission, "import"], env=env, capture_output=True, text=True, check=True)
        return {"home": str(home), "tag": done.stdout.strip().rsplit(" ", 1)[-1]}

    made = _once(tmp_path_factory, "bentoml-home", imported)
    home, tag = Path(made["home"]), made["tag"]
    if _XDIST_WORKER:
        home = shutil.copytree(home, tmp_path_factory.getbasetemp() / "bentoml-home")
    return {"home": home, "tag": tag, "model_dir": home / "models" / "readmission" / tag.split(":")[1]}


CHALLENGER_SEED = 7  # the split seed of the shadow fixture's challenger (the champion's: training's default, 42)


@pytest.fixture(scope="session")
def shadow_home(uci_zip, tmp_path_factory):
    """A BentoML home holding a champion and its challenger, both trained on the real data (the challenger on another
    split seed) into a fresh SQLite MLflow store and copied by one `readmission import`: what shadow scoring serves.

    The aliases are set explicitly (champion: the first, challenger: the second), whichever did better on its own
    split. Two trainings (a few minutes), once a run; under xdist each worker has its own copy, as in `bento_home`.
    """

    def make(folder: Path) -> dict:
        from mlflow.tracking import MlflowClient

        from training.settings import CHALLENGER, CHAMPION, MODEL_NAME

        mlflow_home, home = folder / "mlflow", folder / "bentoml"
        with pytest.MonkeyPatch.context() as patch:
            options = {"model_card_path": None, "extra_seeds": 0}
            champion = train_into(mlflow_home, uci_zip, patch, **options)
            challenger = train_into(mlflow_home, uci_zip, patch, seed=CHALLENGER_SEED, **options)
        uri = champion["settings"].tracking_uri
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, champion["registered"].version)
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, challenger["registered"].version)
        env = {**os.environ, **bentoml_env(home), "READMISSION_HOME": str(mlflow_home)}
        env.pop("MLFLOW_TRACKING_URI", None)
        readmission = str(Path(sys.executable).parent / "readmission")
        done = subprocess.run([readmission, "import"], env=env, capture_output=True, text=True, check=True)
        lines = done.stdout.strip().splitlines()  # the challenger's line, then the champion's (the last)
        challenger_line = next(line for line in lines if line.startswith(f"imported {MODEL_NAME}@{CHALLENGER}"))
        return {"home": str(home), "mlflow_home": str(mlflow_home), "data": str(uci_zip),
                "tag": lines[-1].rsplit(" ", 1)[-1], "challenger_tag": challenger_line.rsplit(" ", 1)[-1],
                "champion": dataclasses.asdict(champion["registered"]),
                "challenger": dataclasses.asdict(challenger["registered"])}  # fmt: skip

    made = _once(tmp_path_factory, "shadow-home", make)
    home = Path(made["home"])
    if _XDIST_WORKER:
        home = shutil.copytree(home, tmp_path_factory.getbasetemp() / "shadow-home")
    paths = {"home": home, "mlflow_home": Path(made["mlflow_home"]), "data": Path(made["data"])}
    return made | paths | {name: Registered(**made[name]) for name in ("champion", "challenger")}


@pytest.fixture(scope="session")
def oci_env(bento_home):
    """The environment of oci/*.sh: the test's BentoML home, the venv's bentoml, no telemetry."""
    bin_folder = Path(sys.executable).parent
    return {**os.environ, "BENTOML_HOME": str(bento_home["home"]), "BENTOML_DO_NOT_TRACK": "true",
            "BENTOML": str(bin_folder / "bentoml"), "PYTHON": sys.executable}  # fmt: skip


@pytest.fixture(scope="session")
def oci_image(oci_env, tmp_path_factory):
    """The test's Bento built into an OCI image by oci/build.sh, once a run: tests/deploy/test_oci.py and
    test_kube_play.py run it (under xdist the first worker builds it, the others wait and read oci/image.env's values).

    Slow the first time (about 2 to 6 minutes: a Debian root filesystem for the base image, then apt and PyPI inside
    the build); the base and the build's layers are cached under .readmission/. Skips where oci/build.sh cannot run.
    """

    def build(_: Path) -> dict:
        done = subprocess.run([oci_env["BENTOML"], "build", "--output", "tag"], env=oci_env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
        output = oci_script("build.sh", [], {**oci_env, "READMISSION_BENTO": tag}, timeout=720)
        env_file = REPO / ".readmission" / "oci" / "image.env"
        image = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        assert image["VERSION"] == tag.split(":")[1], output
        return image | {"bento_tag": tag, "output": output}

    return _once(tmp_path_factory, "oci-image", build)


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
_FIGURE = "figure: "  # the prefix of a figure among a test's user_properties


@pytest.fixture
def figure(request):
    """Record a measured figure (name, value); `make test` prints them all at the end, for the README.

    A figure recorded again under the same test and name replaces the earlier value (running totals). Figures
    travel in the test's report (its user_properties), so those measured by xdist workers reach the summary too.
    """

    def record(name: str, value: object) -> None:
        key = f"{_FIGURE}{request.node.originalname}: {name}"
        properties = request.node.user_properties
        properties[:] = [(k, v) for k, v in properties if k != key] + [(key, str(value))]

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the figures of a finished test phase (in the process that prints the summary)."""
    for name, value in report.user_properties:
        if isinstance(name, str) and name.startswith(_FIGURE):
            _FIGURES[name.removeprefix(_FIGURE)] = value


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the figures the tests measured (soak, fault recovery, fuzzing) under one heading."""
    if _FIGURES:
        terminalreporter.section("measured figures")
        for name, value in _FIGURES.items():
            terminalreporter.write_line(f"{name} = {value}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `serial` last, as `make test` runs them (before `-m` deselects any).

    Last: the load tests' traffic to the shared service must not reach the tests that look at what it served (feature
    drift on held-out rows, every dashboard query).
    """
    items.sort(key=lambda item: item.get_closest_marker("serial") is not None)  # stable: the order otherwise kept
