"""`readmission import`: MLflow champion into the BentoML model store, with its provenance."""

import json
import os
import subprocess
import sys
from pathlib import Path

from bento import features
from tests.conftest import bentoml_env

BIN = Path(sys.executable).parent


def _run(command: list[str], bentoml_home: Path, mlflow_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **bentoml_env(bentoml_home), "READMISSION_HOME": str(mlflow_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_imported_model_carries_mlflow_provenance(bento_home, champion_store):
    listing = _run(
        [str(BIN / "bentoml"), "models", "get", bento_home["tag"], "-o", "json"],
        bento_home["home"],
        champion_store["home"],
    )
    info = json.loads(listing.stdout)
    metadata = info["metadata"]
    assert metadata["mlflow_version"] == champion_store["registered"].version
    assert metadata["mlflow_run_id"] == champion_store["registered"].run_id
    assert metadata["spec_hash"] == features.spec_hash()
    assert 0 < metadata["threshold"] < 1 and 0.5 < metadata["test_roc_auc"] <= 1


def test_missing_alias_fails_clearly_and_leaves_the_store_as_it_was(champion_store, tmp_path):
    home = tmp_path / "bentoml"
    failed = _run([str(BIN / "readmission"), "import", "--alias", "no-such-alias"], home, champion_store["home"])
    assert failed.returncode == 1
    assert "no version or alias 'no-such-alias'" in failed.stderr
    models = home / "models"
    assert not models.exists() or not any(models.rglob("model.ubj"))
