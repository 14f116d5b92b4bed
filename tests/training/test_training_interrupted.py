"""Training killed half-way (SIGKILL, SIGINT) leaves the registry's champion where it was."""

import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import bentoml_env
from training.settings import CHAMPION, MODEL_NAME

BIN = Path(sys.executable).parent
STAGE_TIMEOUT_S = 150


def copy_store(source: Path, target: Path) -> Path:
    """Copy an embedded MLflow store (SQLite + artifacts) and repoint its stored paths at the copy.

    The store records absolute artifact locations; without the rewrite a run in the copy would write
    into the original, which other tests share.
    """
    shutil.copytree(source, target)
    old, new = f"{source}/", f"{target}/"
    with sqlite3.connect(target / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT")):
                    db.execute(
                        f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) '
                        f'WHERE instr("{column[1]}", ?) > 0',
                        (old, new, old),
                    )
    return target


def client_of(home: Path) -> MlflowClient:
    """A client of the store at `home`, without touching MLflow's process-wide tracking URI."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(home: Path) -> tuple[str, str]:
    """(version, run id) that the champion alias points at."""
    version = client_of(home).get_model_version_by_alias(MODEL_NAME, CHAMPION)
    return str(version.version), version.run_id


def run_count(home: Path) -> int:
    """Number of MLflow runs recorded in the store."""
    with sqlite3.connect(home / "mlflow.db") as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]


def environment(mlflow_home: Path, bentoml_home: Path) -> dict[str, str]:
    """`readmission` pointed at the copied MLflow store and a BentoML home of the test's own."""
    env = {**os.environ, **bentoml_env(bentoml_home), "READMISSION_HOME": str(mlflow_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def train_until(
    command: list[str], env: dict[str, str], marker: str
) -> tuple[subprocess.Popen, queue.Queue[str | None], list[str]]:
    """Start `command`; return once it printed a line containing `marker` (its output so far, and the rest to come)."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # as from a terminal: a shell's background job (CI under nohup, say) passes SIGINT on as ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + STAGE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if marker in line:
            return process, lines, seen
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    pytest.fail(f"training never printed {marker!r}:\n{''.join(seen)[-3000:]}")


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize(
    ("signum", "marker"),
    [
        # the new MLflow run exists, XGBoost is fitting
        (signal.SIGKILL, "training XGBoost (MLflow run"),
        # Ctrl-C: XGBoost stops between two trees, MLflow marks the run KILLED
        (signal.SIGINT, "training XGBoost (MLflow run"),
    ],
    ids=["sigkill", "sigint"],
)
def test_interrupted_training_leaves_the_champion_untouched(champion_store, uci_zip, tmp_path, signum, marker):
    home = copy_store(champion_store["home"], tmp_path / "mlflow")
    before = champion(home)
    assert before == (champion_store["registered"].version, champion_store["registered"].run_id)
    runs_before = run_count(home)
    env = environment(home, tmp_path / "bentoml")

    command = [str(BIN / "readmission"), "train", "--data", str(uci_zip), "--force"]
    process, lines, seen = train_until(command, env, marker)
    assert run_count(home) == runs_before + 1  # training is under way in a run of its own
    os.killpg(process.pid, signum)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("training did not stop within 60 s of the signal")
    while (line := lines.get(timeout=30)) is not None:
        seen.append(line)
    output = "".join(seen)
    assert "registered readmission version" not in output, output[-3000:]
    if signum == signal.SIGINT:
        assert process.returncode == 130, output[-3000:]
        assert "readmission train: interrupted" in output
    else:
        assert process.returncode == -signal.SIGKILL

    # --force would have made the new model champion had training finished: the alias did not move
    assert champion(home) == before
    with sqlite3.connect(home / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    evaluated = subprocess.run(
        [str(BIN / "readmission"), "evaluate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"version {before[0]} (run {before[1]}), aliases: champion" in evaluated.stdout

    imported = subprocess.run(
        [str(BIN / "readmission"), "import"], env=env, capture_output=True, text=True, timeout=300
    )
    assert imported.returncode == 0, imported.stderr
    tag = imported.stdout.strip().rsplit(" ", 1)[-1]
    shown = subprocess.run(
        [str(BIN / "bentoml"), "models", "get", tag, "-o", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    metadata = json.loads(shown.stdout)["metadata"]
    assert (metadata["mlflow_version"], metadata["mlflow_run_id"]) == before


def test_dying_between_registration_and_alias_leaves_the_champion(champion_store, tmp_path, monkeypatch):
    """The last window of a run: the new version is registered, the alias not yet moved."""
    from training import registry
    from training.settings import TrainingSettings

    home = copy_store(champion_store["home"], tmp_path / "mlflow")
    before = champion(home)
    monkeypatch.setenv("READMISSION_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.connect(TrainingSettings.from_env())
    source = client_of(home).get_model_version(MODEL_NAME, before[0]).source

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry.MlflowClient, "set_registered_model_alias", die)
    with pytest.raises(KeyboardInterrupt):
        registry.register(source, before[1], test_roc_auc=1.0, force=True)
    versions = client_of(home).search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == int(before[0]) + 1  # registered, never promoted
    assert champion(home) == before
