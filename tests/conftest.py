"""Shared fixtures: the real UCI file where the team provides it, synthetic samples otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ZIP = REPO.parent / "shared" / "data" / "dataset_diabetes.zip"


@pytest.fixture(scope="session")
def uci_zip() -> Path:
    """The real UCI archive: READMISSION_DATA, else ../shared/data/; skips where absent."""
    candidate = Path(os.environ.get("READMISSION_DATA") or SHARED_ZIP)
    if not candidate.is_file():
        pytest.skip(f"the UCI data set is not at {candidate} (set READMISSION_DATA to the zip or CSV)")
    return candidate


@pytest.fixture(scope="session")
def real_champion(uci_zip, tmp_path_factory):
    """A champion trained on the real data into a fresh SQLite MLflow store (about a minute)."""
    from training import train
    from training.settings import TrainingSettings

    home = tmp_path_factory.mktemp("real-mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("READMISSION_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings = TrainingSettings.from_env()
        registered = train.run(str(uci_zip), settings, model_card_path=home / "model-card.md")
    return {"home": home, "settings": settings, "registered": registered}
