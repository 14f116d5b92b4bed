"""`readmission import`: copy a registered model from MLflow into the BentoML model store, with its challenger.

Where the registry's `challenger` alias names another version of the same feature spec, that version is copied too,
as the BentoML model CHALLENGER_MODEL (compiled like the champion), and the champion's stored model names it
(metadata `challenger_tag`, empty where none): the service scores it in shadow (READMISSION_SHADOW) and a
challenger left in the store by an earlier import is never picked up.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import mlflow
from mlflow.tracking import MlflowClient

from bento import features
from bento.model import compiled
from bento.model.predictor import BOOSTER_FILE, CHALLENGER_TAG, METADATA_FILE
from training import compiler, registry
from training.settings import CHALLENGER, MODEL_NAME, TrainingSettings

CHALLENGER_MODEL = f"{MODEL_NAME}-challenger"  # the BentoML model of the challenger in shadow


@dataclass(frozen=True)
class Imported:
    """The BentoML tags of an import: the champion's and its challenger's (None where none was imported)."""

    tag: str
    challenger_tag: str | None


@dataclass(frozen=True)
class Fetched:
    """A registered version fetched from MLflow and compiled in a temporary folder, not stored yet."""

    version: Any  # MLflow's ModelVersion
    metadata: dict[str, Any]
    booster: Any  # xgboost.Booster
    backend: str
    folder: Path


def import_model(alias_or_version: str, settings: TrainingSettings) -> Imported:
    """Copy `models:/readmission@alias` (or a version), and the challenger where there is one, into the BentoML
    store; return the new tags.

    The store is only written once everything was fetched and checked.
    """
    registry.connect(settings)
    client = MlflowClient()
    version = registry.find_version(client, alias_or_version)
    if version is None:
        raise registry.RegistryError(f"{MODEL_NAME} has no version or alias {alias_or_version!r}")
    challenger = registry.find_version(client, CHALLENGER)
    with tempfile.TemporaryDirectory() as folder:
        champion = _fetch(version, Path(folder) / "champion")
        rival = None
        if challenger is not None and challenger.version != version.version:
            try:
                rival = _fetch(challenger, Path(folder) / "challenger")
            except registry.RegistryError as error:
                print(f"warning: the challenger is not imported: {error}", file=sys.stderr)
        challenger_tag = None if rival is None else _store(CHALLENGER_MODEL, rival, f"mlflow-{CHALLENGER}", None)
        tag = _store(MODEL_NAME, champion, f"mlflow-{alias_or_version}", challenger_tag or "")
    return Imported(tag, challenger_tag)


def _fetch(version: Any, local: Path) -> Fetched:
    """The version's booster and metadata, compiled into `local`; RegistryError where its feature spec is not
    this code's."""
    local.mkdir()
    mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=METADATA_FILE, dst_path=str(local))
    metadata = json.loads((local / METADATA_FILE).read_text())
    if metadata["spec_hash"] != features.spec_hash():
        raise registry.RegistryError(
            f"{MODEL_NAME} version {version.version} was trained on feature spec {metadata['spec_hash']}, "
            f"this code has {features.spec_hash()}: retrain it"
        )
    booster = mlflow.xgboost.load_model(f"models:/{MODEL_NAME}/{version.version}")
    metadata |= {
        "mlflow_model_name": MODEL_NAME,
        "mlflow_version": str(version.version),
        "mlflow_run_id": version.run_id,
    }
    try:
        manifest = compiler.compile_booster(booster, local / compiled.COMPILED_DIR)
        backend = manifest["backend"]
        for engine, reason in manifest["refused"].items():
            print(
                f"warning: version {version.version} is compiled by {backend}, not {engine} ({reason})", file=sys.stderr
            )
    except compiler.CompileError as error:
        print(
            f"warning: version {version.version} is not compiled ({error}); the service will score it with xgboost",
            file=sys.stderr,
        )
        backend = "xgboost"
    return Fetched(version, metadata, booster, backend, local)


def _store(name: str, fetched: Fetched, source: str, challenger_tag: str | None) -> str:
    """Write a fetched version into the BentoML store as model `name`; its new tag. A champion names its challenger
    (`challenger_tag`: empty where none); a challenger names none (None)."""
    metadata, version = fetched.metadata, fetched.version
    test = {k: round(v, 6) for k, v in metadata["test_metrics"].items()}
    named = {} if challenger_tag is None else {CHALLENGER_TAG: challenger_tag}
    with bentoml.models.create(
        name,
        labels={"mlflow_version": str(version.version), "source": source},
        metadata={
            "mlflow_model_name": MODEL_NAME,
            "mlflow_version": str(version.version),
            "mlflow_run_id": version.run_id,
            "threshold": metadata["threshold"],
            "spec_hash": metadata["spec_hash"],
            "test_roc_auc": test["roc_auc"],
            "test_pr_auc": test["pr_auc"],
            "test_brier": test["brier"],
            "backend": fetched.backend,
            **named,
        },
    ) as stored:
        fetched.booster.save_model(stored.path_of(BOOSTER_FILE))
        Path(stored.path_of(METADATA_FILE)).write_text(json.dumps(metadata))
        if fetched.backend != "xgboost":
            shutil.copytree(fetched.folder / compiled.COMPILED_DIR, stored.path_of(compiled.COMPILED_DIR))
    return str(stored.tag)
