"""The unit layer's fixtures: a tiny model trained in-process on synthetic rows, and the service's application over it.

Nothing here starts a process, opens a port or reads the UCI data: the model is an xgboost booster of a few trees fitted
in a second on tests/sample_data.py's rows (through training/data.py's cleaning and bento.features' encoding), wrapped
as the served Predictor; the application is bento/server/app.py's, driven by Starlette's TestClient (which runs its
lifespan: the prediction log in a temporary folder, no gRPC, no metrics port).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bento import features
from bento.core.scoring import ScoringCore
from bento.model import risk_bands
from bento.model.predictor import ModelInfo, Predictor
from bento.monitoring import live_performance
from bento.quality import drift, unusual
from bento.server.app import create_app
from bento.settings import PREFIX, ServiceSettings
from tests import sample_data
from training import data

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 beside the TestClient; the project has httpx (the TestClient works with both)
    warnings.simplefilter("ignore", UserWarning)  # StarletteDeprecationWarning
    from starlette.testclient import TestClient

TREES = 12


@pytest.fixture(autouse=True)
def no_readmission_variables(monkeypatch) -> None:
    """A unit test reads none of the developer's READMISSION_* variables: it says what it sets. (Per test, so the
    tests of other layers that share a pytest-xdist worker keep READMISSION_DATA and the others.)"""
    for name in [name for name in os.environ if name.startswith(PREFIX)]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Predictor:
    """A real booster of TREES depth-3 trees fitted on 600 synthetic encounters, served by xgboost (no compiled
    trees); its threshold is the median training probability, so both labels occur."""
    import xgboost as xgb

    csv = sample_data.write_csv(tmp_path_factory.mktemp("tiny-model"))
    x, y = data.design_matrix(data.clean(data.load(csv, verify=False)))
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=TREES)
    probabilities = booster.inplace_predict(x)
    info = ModelInfo(
        name="readmission",
        version="1",
        run_id="tiny",
        tag="readmission:tiny",
        threshold=float(np.median(probabilities)),
        prevalence=float(y.mean()),
        spec_hash=features.spec_hash(),
        test_metrics={"roc_auc": 0.7, "brier": 0.1},
        score_reference=risk_bands.histogram(probabilities),
        drift_reference=drift.Reference.from_training(x),
        unusual_reference=unusual.Reference.from_training(x),
    )
    return Predictor(booster, info)


@pytest.fixture(scope="session")
def old_model(tiny) -> Predictor:
    """The tiny model as a model trained before the unusual-patient check: no reference in its metadata."""
    return Predictor(tiny.booster, dataclasses.replace(tiny.info, unusual_reference=None))


def settings_of(home: Path, **overrides: Any) -> ServiceSettings:
    """The service's settings for an in-process test: no gRPC, no metrics port, the log under `home`."""
    return ServiceSettings(home=home, grpc_port=0, metrics_port=0, **overrides)


@pytest.fixture
def core_of(tiny, tmp_path) -> Callable[..., ScoringCore]:
    """A scoring core serving the tiny model (or `model`), with `challenger` in shadow where given, and settings
    `overrides`, its state in the test's temporary folder."""

    def make(model: Predictor | None = None, challenger: Predictor | None = None, **overrides: Any) -> ScoringCore:
        scoring = ScoringCore(settings_of(tmp_path, **overrides))
        scoring.load(model or tiny)
        if challenger is not None:
            scoring.shadow(challenger)
        return scoring

    return make


@pytest.fixture
def core(core_of) -> ScoringCore:
    """A scoring core serving the tiny model with the default settings."""
    return core_of()


@pytest.fixture
def serve(core_of, monkeypatch) -> Iterator[Callable[..., TestClient]]:
    """Start the application over a core serving the tiny model (or `model=`, with `challenger=` in shadow) with
    settings `overrides` (the lifespan runs: the prediction log is tmp_path/predictions.db); every client is closed,
    and the lifespan ended, after the test. The live figures' holder never rests: the start-up of its child process
    alone (0.15 s of CPU) would rest it 15 s, past what a test waits for a recomputation."""
    monkeypatch.setattr(live_performance, "CPU_SHARE", 1e9)
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        client = TestClient(create_app(core_of(**overrides)), raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def app(serve) -> TestClient:
    """The application with the default settings."""
    return serve()
