"""The prediction core: the booster, its metadata, probabilities, labels, bands and factors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from bento import features, scores

BOOSTER_FILE = "model.ubj"
METADATA_FILE = "model_metadata.json"
_FIELD_INDEX = {name: i for i, name in enumerate(f.name for f in features.FIELDS)}
_COLUMN_TO_FIELD = np.array([_FIELD_INDEX[name] for name in features.COLUMN_FIELD])


class ModelLoadError(RuntimeError):
    """The model files are missing, corrupt, or were trained on another feature spec."""


@dataclass(frozen=True)
class ModelInfo:
    """What a response and /metrics say about the model."""

    name: str
    version: str
    run_id: str
    tag: str
    threshold: float
    prevalence: float
    spec_hash: str
    test_metrics: dict[str, float]
    score_reference: list[float]

    def summary(self) -> dict[str, Any]:
        """The model block of a /predict answer."""
        return {"name": self.name, "version": self.version, "bento_tag": self.tag, "threshold": self.threshold}


class Predictor:
    """One booster, single-threaded (one per worker), predicting probabilities of readmission."""

    def __init__(self, booster: xgb.Booster, info: ModelInfo) -> None:
        self.booster = booster
        self.info = info

    @classmethod
    def load(cls, folder: Path, tag: str) -> Predictor:
        """Load and check the model files written by `readmission import`."""
        try:
            metadata = json.loads((folder / METADATA_FILE).read_text())
            booster = xgb.Booster(model_file=str(folder / BOOSTER_FILE))
        except (OSError, ValueError, xgb.core.XGBoostError) as error:
            raise ModelLoadError(f"model {tag} cannot be read from {folder.name}: {type(error).__name__}") from error
        if metadata.get("spec_hash") != features.spec_hash() or metadata.get("columns") != list(features.COLUMNS):
            raise ModelLoadError(
                f"model {tag} was trained on feature spec {metadata.get('spec_hash')}, "
                f"this service speaks {features.spec_hash()}"
            )
        if booster.num_features() != len(features.COLUMNS):
            raise ModelLoadError(f"model {tag} expects {booster.num_features()} columns, not {len(features.COLUMNS)}")
        booster.set_param({"nthread": 1})
        info = ModelInfo(
            name=metadata.get("mlflow_model_name", "readmission"),
            version=str(metadata.get("mlflow_version", "0")),
            run_id=metadata.get("mlflow_run_id", ""),
            tag=tag,
            threshold=float(metadata["threshold"]),
            prevalence=float(metadata["prevalence"]),
            spec_hash=metadata["spec_hash"],
            test_metrics=metadata.get("test_metrics", {}),
            score_reference=metadata["score_reference"],
        )
        return cls(booster, info)

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of readmission within 30 days for each encoded row (float32)."""
        return self.booster.inplace_predict(matrix, validate_features=False).astype(np.float32, copy=False)

    def labels(self, probabilities: np.ndarray) -> np.ndarray:
        """1 where the probability reaches the operating threshold."""
        return (probabilities >= self.info.threshold).astype(np.int64)

    def band(self, probability: float) -> scores.RiskBand:
        """The risk band of one probability."""
        return scores.risk_band(probability, self.info.prevalence, self.info.threshold)

    def field_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP contributions (log-odds) summed per clinical field: shape [N, len(FIELDS)]."""
        contributions = self.booster.predict(xgb.DMatrix(matrix), pred_contribs=True)[:, :-1]
        per_field = np.zeros((matrix.shape[0], len(features.FIELDS)), dtype=np.float64)
        np.add.at(per_field.T, _COLUMN_TO_FIELD, contributions.T)
        return per_field
