"""`readmission import`: copy a registered model from MLflow into the BentoML model store."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import bentoml
import mlflow
from mlflow.tracking import MlflowClient

from bento import features
from bento.model import compiled
from bento.model.predictor import BOOSTER_FILE, METADATA_FILE
from training import compiler, registry
from training.settings import MODEL_NAME, TrainingSettings


def import_model(alias_or_version: str, settings: TrainingSettings) -> str:
    """Copy `models:/readmission@alias` (or a version) into the BentoML store; return the new tag.

    The store is only written once everything was fetched and checked.
    """
    registry.connect(settings)
    client = MlflowClient()
    version = registry.find_version(client, alias_or_version)
    if version is None:
        raise registry.RegistryError(f"{MODEL_NAME} has no version or alias {alias_or_version!r}")
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder)
        mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=METADATA_FILE, dst_path=folder)
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
        test = {k: round(v, 6) for k, v in metadata["test_metrics"].items()}
        try:
            manifest = compiler.compile_booster(booster, local / compiled.COMPILED_DIR)
            backend = manifest["backend"]
            for engine, reason in manifest["refused"].items():
                print(f"warning: the model is compiled by {backend}, not {engine} ({reason})", file=sys.stderr)
        except compiler.CompileError as error:
            print(f"warning: the model is not compiled ({error}); the service will score with xgboost", file=sys.stderr)
            backend = "xgboost"
        with bentoml.models.create(
            MODEL_NAME,
            labels={"mlflow_version": str(version.version), "source": f"mlflow-{alias_or_version}"},
            metadata={
                "mlflow_model_name": MODEL_NAME,
                "mlflow_version": str(version.version),
                "mlflow_run_id": version.run_id,
                "threshold": metadata["threshold"],
                "spec_hash": metadata["spec_hash"],
                "test_roc_auc": test["roc_auc"],
                "test_pr_auc": test["pr_auc"],
                "test_brier": test["brier"],
                "backend": backend,
            },
        ) as stored:
            booster.save_model(stored.path_of(BOOSTER_FILE))
            Path(stored.path_of(METADATA_FILE)).write_text(json.dumps(metadata))
            if backend != "xgboost":
                shutil.copytree(local / compiled.COMPILED_DIR, stored.path_of(compiled.COMPILED_DIR))
        return str(stored.tag)
