"""The built Bento: self-contained, lean, and serving the same predictions as the source tree."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bento import features
from bento.model.predictor import Predictor
from tests import servers
from tests.helpers import RECORD, bentoml_env

BENTOML = str(Path(sys.executable).parent / "bentoml")


def _run(args: list[str], home: Path, cwd: Path) -> str:
    done = subprocess.run([BENTOML, *args], env={**bentoml_env(home), "PATH": str(Path(sys.executable).parent)},
                          cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def exported_bento(bento_home, tmp_path_factory):
    """Build the Bento from the repo, export it to a file, import it into an empty BentoML home."""
    repo = Path(__file__).resolve().parents[2]
    out = _run(["build", "--output", "tag"], bento_home["home"], repo)
    tag = out.strip().splitlines()[-1].removeprefix("__tag__:")
    archive = tmp_path_factory.mktemp("export") / "readmission.bento"
    _run(["export", tag, str(archive)], bento_home["home"], repo)
    fresh = tmp_path_factory.mktemp("fresh-bentoml-home")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _run(["import", str(archive)], fresh, elsewhere)
    return {"tag": tag, "home": fresh, "cwd": elsewhere, "archive": archive}


def test_bento_carries_the_model_and_lean_requirements(exported_bento, bento_home):
    models = _run(["models", "list", "-o", "json"], exported_bento["home"], exported_bento["cwd"])
    assert bento_home["tag"] in models  # the model travelled inside the exported Bento
    version = exported_bento["tag"].split(":")[1]
    bento_dir = exported_bento["home"] / "bentos" / "readmission" / version
    lines = (bento_dir / "env" / "python" / "requirements.txt").read_text().splitlines()
    packages = {line.split("==")[0].strip().lower() for line in lines if line.strip() and not line.startswith("#")}
    assert "xgboost-cpu" in packages
    assert not packages & {"mlflow", "mlflow-skinny", "kserve", "scikit-learn", "pandas", "xgboost"}
    shipped = {p.name for p in (bento_dir / "src").rglob("*.py")}
    assert "service.py" in shipped and not shipped & {"train.py", "registry.py", "importer.py"}
    docs = bento_dir / "src" / "bento" / "openapi" / "static"  # the /docs page's own files (bento/openapi/docs_page.py)
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "docs.js"} <= {p.name for p in docs.rglob("*")}


def test_the_bento_carries_the_challenger_beside_the_champion(shadow_home, tmp_path):
    """Built from a store holding the champion and the challenger it names, exported, imported elsewhere: both
    models travel with the Bento."""
    home = shutil.copytree(shadow_home["home"], tmp_path / "home", ignore=shutil.ignore_patterns("prometheus*"))
    repo = Path(__file__).resolve().parents[2]
    tag = _run(["build", "--output", "tag"], home, repo).strip().splitlines()[-1].removeprefix("__tag__:")
    expected = sorted([shadow_home["tag"], shadow_home["challenger_tag"]])
    (service,) = json.loads(_run(["get", tag, "-o", "json"], home, repo))["services"]
    assert sorted(model["tag"] for model in service["models"]) == expected
    archive, fresh, elsewhere = tmp_path / "readmission.bento", tmp_path / "fresh", tmp_path / "elsewhere"
    _run(["export", tag, str(archive)], home, repo)
    elsewhere.mkdir()
    _run(["import", str(archive)], fresh, elsewhere)
    carried = json.loads(_run(["models", "list", "-o", "json"], fresh, elsewhere))
    assert sorted(model["tag"] for model in carried) == expected


def test_built_bento_serves_the_same_predictions(exported_bento, bento_home, tmp_path):
    port = servers.free_port()
    command = [BENTOML, "serve", exported_bento["tag"], "--host", "127.0.0.1", "--port", str(port)]
    env = bentoml_env(exported_bento["home"]) | {"PYTHONPATH": ""}
    server = servers.start(command, port, env, tmp_path / "bento.log")
    try:
        answer = httpx.post(f"{server.url}/predict", json=RECORD, timeout=10).json()
    finally:
        server.stop()
    local = Predictor.load(bento_home["model_dir"], bento_home["tag"])
    expected = float(local.probabilities(features.encode([features.validate(RECORD)]))[0])
    assert answer["probability"] == pytest.approx(expected, abs=1e-6)
    assert answer["model"]["bento_tag"] == bento_home["tag"]


def test_bento_requirements_are_the_serve_extra():
    # bento/requirements.txt is uv.lock's export of the serve extra's closure, pinned and hashed (.ci/lock.py;
    # tests/deploy/test_supply_chain.py checks it is the current export): every declared requirement, nothing heavy
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    repo = Path(__file__).resolve().parents[2]
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    serve = [*project["dependencies"], *project["optional-dependencies"]["serve"]]
    lines = (repo / "bento" / "requirements.txt").read_text().splitlines()
    shipped = {canonicalize_name(line.split("==")[0]) for line in lines if line[:1].isalnum()}
    assert {canonicalize_name(Requirement(text).name) for text in serve} <= shipped
    assert not shipped & {"mlflow", "mlflow-skinny", "kserve", "scikit-learn", "pandas", "xgboost"}
