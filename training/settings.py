"""Training-side configuration, read from the environment once (see README, Configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bento.settings import MODEL_NAME as MODEL_NAME  # the one name, beside the service's settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The team's copy of the UCI archive, beside the checkout (the Makefile passes it to training as READMISSION_DATA).
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "dataset_diabetes.zip"
EXPERIMENT_NAME = "readmission"
CHAMPION = "champion"
CHALLENGER = "challenger"


def data_file() -> Path | None:
    """The UCI data already on this machine: READMISSION_DATA, else the team's shared copy; None where absent.

    What the tests, the load test and the benchmark use (training itself also downloads: `training.data.locate`).
    """
    chosen = os.environ.get("READMISSION_DATA")
    candidate = Path(chosen) if chosen else SHARED_DATA
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class TrainingSettings:
    """Where MLflow keeps runs and models."""

    home: Path
    tracking_uri: str
    artifact_location: str | None  # set only for the embedded SQLite default

    @classmethod
    def from_env(cls) -> TrainingSettings:
        """READMISSION_HOME (default .readmission/ in the project) and MLFLOW_TRACKING_URI."""
        home = Path(os.environ.get("READMISSION_HOME", PROJECT_ROOT / ".readmission")).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return cls(home=home, tracking_uri=uri, artifact_location=None)
        return cls(
            home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}", artifact_location=(home / "mlartifacts").as_uri()
        )
