"""The models: XGBoost with early stopping, and a logistic-regression baseline."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bento import features

XGB_PARAMS: dict[str, object] = {
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "eta": 0.05,
    "max_depth": 4,
    "min_child_weight": 20,
    "subsample": 0.7,
    "colsample_bytree": 0.3,
    "reg_lambda": 10.0,
}
MAX_ROUNDS = 3000
EARLY_STOPPING_ROUNDS = 100


@dataclass(frozen=True)
class Trained:
    """A fitted booster with how it stopped."""

    booster: xgb.Booster
    best_iteration: int
    validation_auc: float


def train_xgboost(
    x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray, seed: int
) -> Trained:
    """Gradient-boosted trees, stopped early on validation ROC-AUC; keeps only the best rounds.

    Columns are positional (features.COLUMNS): XGBoost reserves '[', ']' and '<' in feature names.
    """
    params = {**XGB_PARAMS, "seed": seed, "nthread": os.cpu_count() or 1}
    train = xgb.DMatrix(x_train, label=y_train)
    valid = xgb.DMatrix(x_valid, label=y_valid)
    booster = xgb.train(
        params,
        train,
        num_boost_round=MAX_ROUNDS,
        evals=[(valid, "validation")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=250,
    )
    best = booster.best_iteration
    trimmed = booster[: best + 1]
    return Trained(booster=trimmed, best_iteration=best, validation_auc=float(booster.best_score))


def predict(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Probability of readmission within 30 days."""
    return booster.predict(xgb.DMatrix(x))


def train_baseline(x_train: np.ndarray, y_train: np.ndarray) -> Pipeline:
    """Logistic regression on the same columns (median-imputed, standardised)."""
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=2000, C=0.1),
    )
    return model.fit(x_train, y_train)


def field_importance(booster: xgb.Booster) -> pd.DataFrame:
    """Total gain per clinical field (the one-hot columns of a field summed), largest first."""
    gain = booster.get_score(importance_type="total_gain")
    per_field: dict[str, float] = {}
    for index, field_name in enumerate(features.COLUMN_FIELD):
        per_field[field_name] = per_field.get(field_name, 0.0) + gain.get(f"f{index}", 0.0)
    total = sum(per_field.values()) or 1.0
    table = pd.DataFrame(
        [{"field": k, "label": features.FIELDS_BY_NAME[k].label, "gain_share": v / total} for k, v in per_field.items()]
    )
    return table.sort_values("gain_share", ascending=False).reset_index(drop=True)
