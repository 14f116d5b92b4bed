"""How much the test ROC-AUC owes to the split: the same configuration trained on other patient-grouped splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bento.quality import figures
from training import data, model

EXTRA_SEEDS = 2  # besides the run's own seed: three splits in all


def roc_aucs_by_seed(frame: pd.DataFrame, seeds: list[int]) -> dict[int, float]:
    """Test ROC-AUC of XGBoost (early stopping as in a run) on the patient-grouped split of each seed."""
    result = {}
    for seed in seeds:
        parts = data.split(frame, seed=seed)
        x_train, y_train = data.design_matrix(parts.train)
        x_valid, y_valid = data.design_matrix(parts.validation)
        x_test, y_test = data.design_matrix(parts.test)
        trained = model.train_xgboost(x_train, y_train, x_valid, y_valid, seed)
        result[seed] = figures.roc_auc(y_test, model.predict(trained.booster, x_test)) or float("nan")
    return result


def spread(aucs: dict[int, float]) -> dict[str, float]:
    """Mean, standard deviation (n - 1), minimum and maximum of the ROC-AUC over the seeds."""
    values = np.array(list(aucs.values()))
    return {
        "seed_roc_auc_mean": float(values.mean()),
        "seed_roc_auc_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "seed_roc_auc_min": float(values.min()),
        "seed_roc_auc_max": float(values.max()),
    }
