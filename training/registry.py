"""MLflow: log a training run, register the model, and move the champion alias."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import mlflow
import numpy as np
import requests
import xgboost as xgb
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from bento import features
from training.settings import CHALLENGER, CHAMPION, EXPERIMENT_NAME, MODEL_NAME, TrainingSettings

METADATA_ARTIFACT = "model_metadata.json"  # everything the service needs besides the booster
# A tracking server that does not answer within this (connect, read) time is reported unreachable at once.
PROBE_TIMEOUT_S = (5.0, 15.0)
# MLflow's own HTTP defaults retry 7 times with exponential backoff (minutes) and wait 120 s per request:
# an unreachable or failing server would make every command hang. These apply unless the environment sets them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


class RegistryError(RuntimeError):
    """The registry cannot be reached or lacks what was asked for."""


class NotPromotedError(RuntimeError):
    """The evidence does not allow moving the champion alias: why."""


@dataclass(frozen=True)
class Registered:
    """A registered model version and the alias it received."""

    version: str
    run_id: str
    alias: str
    test_roc_auc: float
    previous_champion_auc: float | None


def connect(settings: TrainingSettings) -> str:
    """Point MLflow at the configured store and return the experiment id (created if missing).

    A remote tracking server is probed once with a short timeout first, so an unreachable or failing one
    is a prompt RegistryError naming it rather than minutes of retries.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    if urlsplit(settings.tracking_uri).scheme in ("http", "https"):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        probe(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    try:
        experiment = mlflow.get_experiment_by_name(EXPERIMENT_NAME)
        if experiment is not None:
            return experiment.experiment_id
        return mlflow.create_experiment(EXPERIMENT_NAME, artifact_location=settings.artifact_location)
    except MlflowException as error:
        raise RegistryError(f"cannot reach MLflow at {shown(settings.tracking_uri)}: {error.message}") from error


def shown(uri: str) -> str:
    """The URI without any user:password part, for messages."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


def probe(uri: str) -> None:
    """One request to an HTTP tracking server, no retries; RegistryError when it does not answer like MLflow.

    Refused connections, time-outs and 5xx answers fail; 2xx/4xx (e.g. an unknown experiment, missing
    credentials) are left for the MLflow client to report in its own words.
    """
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{urlencode({'experiment_name': EXPERIMENT_NAME})}"
    try:
        answer = requests.get(url, timeout=PROBE_TIMEOUT_S, allow_redirects=False)
    except requests.Timeout:
        raise RegistryError(f"MLflow at {shown(uri)} is unreachable: timed out") from None
    except requests.ConnectionError as error:
        reason = "connection refused" if "refused" in str(error).lower() else type(error).__name__
        raise RegistryError(f"MLflow at {shown(uri)} is unreachable: {reason}") from None
    except requests.RequestException as error:
        raise RegistryError(f"MLflow at {shown(uri)} is unreachable: {type(error).__name__}") from None
    if answer.status_code >= 500:
        raise RegistryError(f"MLflow at {shown(uri)} is not working: HTTP {answer.status_code} from the tracking API")


def signature() -> ModelSignature:
    """Input: the encoded matrix [N, F] in features.COLUMNS order; output: the probability [N]."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(features.COLUMNS)))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,), "probability")]),
    )


def log_model(booster: xgb.Booster, metadata: dict[str, Any], artifacts: list[Path]) -> str:
    """Log the booster, its metadata and the report files to the active run; return the model URI."""
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "feature_spec.json"
        spec.write_text(json.dumps([f.describe() for f in features.FIELDS], indent=1))
        meta = Path(folder) / METADATA_ARTIFACT
        meta.write_text(json.dumps(metadata, indent=1))
        for path in (spec, meta, *artifacts):
            mlflow.log_artifact(str(path))
    info = mlflow.xgboost.log_model(booster, name="model", signature=signature(), model_format="ubj")
    return info.model_uri


def register(model_uri: str, run_id: str, test_roc_auc: float, force: bool) -> Registered:
    """Register the run's model; it becomes champion if it beats the current one (or `force`)."""
    client = MlflowClient()
    previous = champion_auc(client)
    version = mlflow.register_model(model_uri, MODEL_NAME, tags={"spec_hash": features.spec_hash()}).version
    alias = CHAMPION if force or previous is None or test_roc_auc > previous else CHALLENGER
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    return Registered(str(version), run_id, alias, test_roc_auc, previous)


def champion_auc(client: MlflowClient) -> float | None:
    """Test ROC-AUC of the current champion, or None when there is none."""
    version = find_version(client, CHAMPION)
    if version is None:
        return None
    return client.get_run(version.run_id).data.metrics.get("test_roc_auc")


def find_version(client: MlflowClient, alias_or_version: str) -> Any:
    """The model version for an alias or a version number, None when absent."""
    try:
        if alias_or_version.isdigit():
            return client.get_model_version(MODEL_NAME, alias_or_version)
        return client.get_model_version_by_alias(MODEL_NAME, alias_or_version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise RegistryError(f"MLflow refused the lookup of {MODEL_NAME}@{alias_or_version}: {error.message}") from error


def promote(version: str) -> None:
    """Point the champion alias at `version` by hand."""
    client = MlflowClient()
    if find_version(client, version) is None:
        raise RegistryError(f"{MODEL_NAME} has no version {version}")
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)


def aliased(alias: str) -> str:
    """The version an alias names; RegistryError where it names none."""
    version = find_version(MlflowClient(), alias)
    if version is None:
        raise RegistryError(f"{MODEL_NAME} has no {alias} (no version holds the alias {alias!r})")
    return str(version.version)


def promote_challenger(champion: str, challenger: str, evidence: dict[str, str], role_tag: str) -> None:
    """Record `evidence` as tags on both versions (and each one's role under `role_tag`), then point the champion
    alias at the challenger and remove the challenger alias."""
    client = MlflowClient()
    for version, role in ((champion, CHAMPION), (challenger, CHALLENGER)):
        for key, value in {**evidence, role_tag: role}.items():
            client.set_model_version_tag(MODEL_NAME, version, key, value)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, challenger)
    client.delete_registered_model_alias(MODEL_NAME, CHALLENGER)


def run_metrics(alias_or_version: str) -> tuple[Any, dict[str, float]]:
    """A registered version and the metrics of the run that produced it."""
    client = MlflowClient()
    version = find_version(client, alias_or_version)
    if version is None:
        raise RegistryError(f"{MODEL_NAME} has no version or alias {alias_or_version!r}")
    return version, client.get_run(version.run_id).data.metrics
