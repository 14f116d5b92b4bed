"""One training run end to end: data, models, evaluation, MLflow run, registration, model card."""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from bento import features
from bento.model import risk_bands
from bento.quality import drift, unusual
from training import data, evaluate, model, model_card, registry, seeds
from training.settings import CHAMPION, MODEL_NAME, TrainingSettings

TOP_ICD9_CODES = 200


def _progress(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)


def field_distributions(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Relative frequency of each value of each field in the training data (for synthetic load)."""
    result: dict[str, dict[str, float]] = {}
    for f in features.FIELDS:
        counts = Counter(None if pd.isna(v) else v for v in frame[f.name].tolist())
        if f.kind is features.Kind.ICD9:
            counts = Counter(dict(counts.most_common(TOP_ICD9_CODES)))
        total = sum(counts.values())
        result[f.name] = {json.dumps(_plain(k)): round(n / total, 6) for k, n in counts.most_common()}
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def run(
    data_path: str | None,
    settings: TrainingSettings,
    force: bool = False,
    seed: int = 42,
    verify: bool = True,
    model_card_path: Path | None = None,
    extra_seeds: int = seeds.EXTRA_SEEDS,
) -> registry.Registered:
    """Train, evaluate, log and register; move `champion` when the new model is better.

    The champion's model card is also written to `model_card_path`, where given. The same configuration
    is also trained on the splits of `extra_seeds` more seeds, for the spread of the test ROC-AUC.
    """
    started = time.monotonic()
    source = data.locate(data_path)
    _progress(started, f"reading {source}")
    frame = data.clean(data.load(source, verify=verify))
    parts = data.split(frame, seed=seed)
    _progress(
        started,
        f"{len(frame):,} encounters of {frame['patient_nbr'].nunique():,} patients; "
        f"train {len(parts.train):,} / validation {len(parts.validation):,} / test {len(parts.test):,}",
    )
    x_train, y_train = data.design_matrix(parts.train)
    x_valid, y_valid = data.design_matrix(parts.validation)
    x_test, y_test = data.design_matrix(parts.test)
    experiment_id = registry.connect(settings)

    with mlflow.start_run(experiment_id=experiment_id) as active:
        run_id = active.info.run_id
        _progress(started, f"training XGBoost (MLflow run {run_id})")
        trained = model.train_xgboost(x_train, y_train, x_valid, y_valid, seed)
        _progress(
            started,
            f"XGBoost stopped at {trained.best_iteration + 1} trees, validation AUC {trained.validation_auc:.4f}",
        )
        baseline = model.train_baseline(x_train, y_train)
        _progress(started, "trained the logistic-regression baseline; evaluating on the test split")

        threshold = evaluate.choose_threshold(y_valid, model.predict(trained.booster, x_valid))
        test_probability = model.predict(trained.booster, x_test)
        xgb_eval = evaluate.evaluate(y_test, test_probability, threshold, parts.test)
        baseline_valid = baseline.predict_proba(x_valid)[:, 1]
        baseline_probability = baseline.predict_proba(x_test)[:, 1]
        baseline_eval = evaluate.evaluate(
            y_test, baseline_probability, evaluate.choose_threshold(y_valid, baseline_valid), parts.test
        )
        importance = model.field_importance(trained.booster)
        training_seconds = time.monotonic() - started
        other_seeds = [seed + 1 + i for i in range(extra_seeds)]
        if other_seeds:
            _progress(started, f"training the same configuration on the splits of seeds {other_seeds}")
        seed_aucs = {seed: xgb_eval.metrics["roc_auc"], **seeds.roc_aucs_by_seed(frame, other_seeds)}
        seed_spread = {**seeds.spread(seed_aucs), "seed_spread_seconds": time.monotonic() - started - training_seconds}

        mlflow.log_params(
            {
                **{f"xgb_{k}": v for k, v in model.XGB_PARAMS.items()},
                "seed": seed,
                "data_source": source.name,
                "spec_hash": features.spec_hash(),
                "columns": len(features.COLUMNS),
                "best_iteration": trained.best_iteration,
                "train_rows": len(parts.train),
                "validation_rows": len(parts.validation),
                "test_rows": len(parts.test),
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in xgb_eval.metrics.items()})
        mlflow.log_metrics({f"baseline_test_{k}": v for k, v in baseline_eval.metrics.items()})
        mlflow.log_metrics({"validation_roc_auc": trained.validation_auc, "training_seconds": training_seconds})
        mlflow.log_metrics({**seed_spread, **{f"seed_{s}_test_roc_auc": auc for s, auc in seed_aucs.items()}})

        info = {
            "model_name": MODEL_NAME,
            "version": "(pending)",
            "run_id": run_id,
            "trained_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seed": seed,
            "encounters": len(frame),
            "patients": int(frame["patient_nbr"].nunique()),
            "train_rows": len(parts.train),
            "validation_rows": len(parts.validation),
            "test_rows": len(parts.test),
            "best_iteration": trained.best_iteration,
            "seed_aucs": seed_aucs,
        }
        metadata = {
            "spec_hash": features.spec_hash(),
            "columns": list(features.COLUMNS),
            "threshold": threshold,
            "prevalence": float(y_train.mean()),
            "test_metrics": xgb_eval.metrics,
            "score_buckets": list(risk_bands.SCORE_BUCKETS),
            "score_reference": risk_bands.histogram(test_probability),
            "field_distributions": field_distributions(parts.train),
            "drift_reference": drift.Reference.from_training(x_train).to_metadata(),
            "unusual_reference": unusual.Reference.from_training(x_train).to_metadata(),
        }
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder)
            importance.to_csv(out / "feature_importance.csv", index=False)
            xgb_eval.subgroups.to_csv(out / "subgroups.csv", index=False)
            files = [
                out / "feature_importance.csv",
                out / "subgroups.csv",
                evaluate.plot_curves(
                    y_test, {"XGBoost": test_probability, "logistic baseline": baseline_probability}, out / "roc_pr.png"
                ),
                evaluate.plot_reliability({"XGBoost": (y_test, test_probability)}, out / "reliability.png"),
            ]
            model_uri = registry.log_model(trained.booster, metadata, files)
            registered = registry.register(model_uri, run_id, xgb_eval.metrics["roc_auc"], force)
            card = model_card.render(
                {**info, "version": registered.version},
                xgb_eval.metrics,
                baseline_eval.metrics,
                xgb_eval.subgroups,
                importance,
            )
            mlflow.log_text(card, "model_card.md")
    if registered.alias == CHAMPION and model_card_path is not None:
        model_card_path.parent.mkdir(parents=True, exist_ok=True)
        model_card_path.write_text(card)
    _progress(started, f"registered {MODEL_NAME} version {registered.version} as @{registered.alias}")
    print(model_card.metrics_table(xgb_eval.metrics, baseline_eval.metrics))
    return registered
