"""The model: the booster, its compiled form, its metadata; probabilities, labels, bands and factors.

Probabilities come from the compiled trees (bento/model/compiled.py) when the artifact loads and agrees with xgboost,
else from xgboost itself (the reason is logged and `readmission_model_backend` says which). TreeSHAP
explanations always come from xgboost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from bento import features
from bento.model import risk_bands
from bento.model.compiled import ENGINES, CompiledModelError, CompiledTrees
from bento.quality import drift, unusual
from bento.settings import MODEL_NAME

R = TypeVar("R")  # what a stored training reference is read into

if TYPE_CHECKING:
    import xgboost as xgb

BOOSTER_FILE = "model.ubj"
METADATA_FILE = "model_metadata.json"
CHALLENGER_TAG = "challenger_tag"  # the champion's BentoML metadata naming its challenger's tag (empty: none)
_FIELD_INDEX = {name: i for i, name in enumerate(f.name for f in features.FIELDS)}
_COLUMN_TO_FIELD = np.array([_FIELD_INDEX[name] for name in features.COLUMN_FIELD])
XGBOOST = "xgboost"
BACKENDS = (XGBOOST, *ENGINES)  # the values of `Predictor.backend` and of the metric's label
logger = logging.getLogger("readmission")


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
    drift_reference: drift.Reference | None = None  # None: the model was trained without one
    unusual_reference: unusual.Reference | None = None  # None: trained without one, the unusual-patient check is off

    def summary(self) -> dict[str, Any]:
        """The model block of a /predict answer."""
        return {"name": self.name, "version": self.version, "bento_tag": self.tag, "threshold": self.threshold}


class Predictor:
    """One booster, single-threaded (one per worker), predicting probabilities of readmission."""

    def __init__(self, booster: xgb.Booster, info: ModelInfo, compiled: CompiledTrees | None = None) -> None:
        self.booster = booster
        self.info = info
        self.compiled = compiled
        self.backend = compiled.backend if compiled is not None else XGBOOST
        self.probabilities = compiled.probabilities if compiled is not None else self._xgboost_probabilities
        reference = info.unusual_reference
        self.unusual = None if reference is None else unusual.Check(reference)  # None: the check is off

    @classmethod
    def load(cls, folder: Path, tag: str) -> Predictor:
        """Load and check the model files written by `readmission import`.

        xgboost is imported here, in the worker, and not with the module: BentoML's supervisor process imports
        the service to read its configuration and needs none of it (about 160 MB less resident memory).
        """
        import xgboost as xgb

        try:
            metadata = json.loads((folder / METADATA_FILE).read_text())
            booster = xgb.Booster(model_file=str(folder / BOOSTER_FILE))
        except (OSError, ValueError, xgb.core.XGBoostError) as error:
            raise ModelLoadError(f"model {tag} cannot be read from {folder.name}: {type(error).__name__}") from error
        if not isinstance(metadata, dict):
            raise ModelLoadError(f"model {tag} has metadata that is not a JSON object")
        if metadata.get("spec_hash") != features.spec_hash() or metadata.get("columns") != list(features.COLUMNS):
            raise ModelLoadError(
                f"model {tag} was trained on feature spec {metadata.get('spec_hash')}, "
                f"this service speaks {features.spec_hash()}"
            )
        if booster.num_features() != len(features.COLUMNS):
            raise ModelLoadError(f"model {tag} expects {booster.num_features()} columns, not {len(features.COLUMNS)}")
        booster.set_param({"nthread": 1})
        try:
            info = _model_info(metadata, tag)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelLoadError(f"model {tag} has incomplete metadata: {type(error).__name__} {error}") from error
        return cls(booster, info, _compiled(folder, tag))

    def _xgboost_probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of readmission within 30 days for each encoded row (float32), from xgboost."""
        return self.booster.inplace_predict(matrix, validate_features=False).astype(np.float32, copy=False)

    def labels(self, probabilities: np.ndarray) -> np.ndarray:
        """1 where the probability reaches the operating threshold."""
        return (probabilities >= self.info.threshold).astype(np.int64)

    def band(self, probability: float) -> risk_bands.RiskBand:
        """The risk band of one probability."""
        return risk_bands.risk_band(probability, self.info.prevalence, self.info.threshold)

    def field_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP contributions (log-odds) summed per clinical field: shape [N, len(FIELDS)]."""
        from xgboost import DMatrix  # imported by `load` already

        contributions = self.booster.predict(DMatrix(matrix), pred_contribs=True)[:, :-1]
        per_field = np.zeros((matrix.shape[0], len(features.FIELDS)), dtype=np.float64)
        np.add.at(per_field.T, _COLUMN_TO_FIELD, contributions.T)
        return per_field


def _compiled(folder: Path, tag: str) -> CompiledTrees | None:
    """The compiled trees of the model, or None (and a log line saying why) to score with xgboost."""
    try:
        trees = CompiledTrees.load(folder, len(features.COLUMNS))
    except CompiledModelError as error:
        logger.warning("model %s scores with xgboost: %s", tag, error)
        return None
    logger.info(
        "model %s scores with compiled trees (%s, max |diff| to xgboost %.2g)", tag, trees.backend, trees.max_abs_diff
    )
    return trees


def _model_info(metadata: dict[str, Any], tag: str) -> ModelInfo:
    """What the metadata says of the model; KeyError, TypeError or ValueError where it is incomplete."""
    return ModelInfo(
        name=metadata.get("mlflow_model_name", MODEL_NAME),
        version=str(metadata.get("mlflow_version", "0")),
        run_id=metadata.get("mlflow_run_id", ""),
        tag=tag,
        threshold=float(metadata["threshold"]),
        prevalence=float(metadata["prevalence"]),
        spec_hash=metadata["spec_hash"],
        test_metrics=metadata.get("test_metrics", {}),
        score_reference=_score_reference(metadata["score_reference"]),
        drift_reference=_optional_reference(metadata, "drift_reference", drift.Reference.from_metadata),
        unusual_reference=_optional_reference(metadata, "unusual_reference", unusual.Reference.from_metadata),
    )


def _optional_reference(metadata: dict[str, Any], key: str, read: Callable[[dict[str, Any]], R]) -> R | None:
    """A training reference stored under `key`, read by `read`; None where the model was trained without one."""
    stored = metadata.get(key)
    if stored is None:
        return None
    if not isinstance(stored, dict):
        raise TypeError(f"{key} is not a JSON object")
    return read(stored)


def _score_reference(shares: Any) -> list[float]:
    values = [float(share) for share in shares]
    if len(values) != len(risk_bands.SCORE_BUCKETS):
        raise ValueError(f"score_reference has {len(values)} buckets, not {len(risk_bands.SCORE_BUCKETS)}")
    return values
