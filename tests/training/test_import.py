"""`readmission import`: MLflow champion into the BentoML model store, with its provenance, and the registry's
challenger beside it for shadow scoring."""

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bento import features
from tests import servers
from tests.helpers import bentoml_env

BIN = Path(sys.executable).parent
FAILURE_BOUND_S = 30  # an import against a dead registry must give up well within this


def _run(
    command: list[str], bentoml_home: Path, mlflow_home: Path, tracking_uri: str | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, **bentoml_env(bentoml_home), "READMISSION_HOME": str(mlflow_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file, folder and link under `folder`, with the sha256 of each file's bytes."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "folder"
        else:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def filled_store(bento_home, tmp_path) -> Path:
    """A BentoML home of its own that already holds the imported champion."""
    home = tmp_path / "bentoml"
    shutil.copytree(bento_home["home"], home, symlinks=True)
    assert any((home / "models").rglob("model.ubj"))
    return home


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


def models_get(tag: str, home: Path, mlflow_home: Path) -> dict:
    listing = _run([str(BIN / "bentoml"), "models", "get", tag, "-o", "json"], home, mlflow_home)
    assert listing.returncode == 0, listing.stderr
    return json.loads(listing.stdout)


def test_the_champion_names_the_challenger_imported_beside_it_and_never_a_stale_one(shadow_home, tmp_path):
    home = shutil.copytree(shadow_home["home"], tmp_path / "bentoml", ignore=shutil.ignore_patterns("prometheus*"))
    champion = models_get(shadow_home["tag"], home, shadow_home["mlflow_home"])["metadata"]
    challenger = models_get(shadow_home["challenger_tag"], home, shadow_home["mlflow_home"])
    assert shadow_home["challenger_tag"].startswith("readmission-challenger:")
    assert champion["challenger_tag"] == shadow_home["challenger_tag"]
    assert champion["mlflow_version"] == shadow_home["champion"].version
    assert challenger["metadata"]["mlflow_version"] == shadow_home["challenger"].version
    assert "challenger_tag" not in challenger["metadata"]
    assert challenger["metadata"]["backend"] == champion["backend"], "compiled like the champion"
    # the registry has no challenger any more (a copy of its store): the next champion names none, and the
    # challenger of the earlier import, still in the BentoML store, is never picked up
    registry = shutil.copytree(shadow_home["mlflow_home"], tmp_path / "mlflow")
    uri = f"sqlite:///{registry / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).delete_registered_model_alias("readmission", "challenger")
    again = _run([str(BIN / "readmission"), "import"], home, registry)
    assert again.returncode == 0, again.stderr
    assert "challenger" not in again.stdout
    tag = again.stdout.strip().rsplit(" ", 1)[-1]
    assert tag != shadow_home["tag"] and models_get(tag, home, registry)["metadata"]["challenger_tag"] == ""
    listed = _run([str(BIN / "bentoml"), "models", "list", "-o", "json"], home, registry).stdout
    assert shadow_home["challenger_tag"] in {model["tag"] for model in json.loads(listed)}, "still in the store"


def test_missing_alias_fails_clearly_and_leaves_the_store_as_it_was(champion_store, filled_store):
    before = snapshot(filled_store)
    failed = _run(
        [str(BIN / "readmission"), "import", "--alias", "no-such-alias"], filled_store, champion_store["home"]
    )
    assert failed.returncode == 1
    assert "no version or alias 'no-such-alias'" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert snapshot(filled_store) == before


def test_unreachable_mlflow_fails_fast_with_the_uri_and_leaves_the_store_as_it_was(filled_store, tmp_path):
    uri = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    before = snapshot(filled_store)
    started = time.monotonic()
    failed = _run([str(BIN / "readmission"), "import"], filled_store, tmp_path / "unused", tracking_uri=uri)
    took = time.monotonic() - started
    assert failed.returncode == 1, failed.stderr
    assert took < FAILURE_BOUND_S
    assert f"MLflow at {uri} is unreachable" in failed.stderr
    assert "Traceback" not in failed.stderr and failed.stderr.count("\n") == 1
    assert snapshot(filled_store) == before


class _Broken(http.server.BaseHTTPRequestHandler):
    """A tracking server in a bad way: HTTP 500 and no JSON, whatever is asked."""

    def _fail(self) -> None:
        self.send_response(500)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>Internal Server Error</html>")

    do_GET = do_POST = _fail  # noqa: N815 (http.server dispatches on these names)

    def log_message(self, *args) -> None:
        pass


def test_failing_mlflow_server_fails_fast_and_leaves_the_store_as_it_was(filled_store, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    before = snapshot(filled_store)
    try:
        started = time.monotonic()
        failed = _run([str(BIN / "readmission"), "import"], filled_store, tmp_path / "unused", tracking_uri=uri)
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert failed.returncode == 1, failed.stderr
    assert took < FAILURE_BOUND_S
    assert f"MLflow at {uri} is not working: HTTP 500" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert snapshot(filled_store) == before
