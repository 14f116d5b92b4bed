"""Training-side configuration, read from the environment once (see README, Configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "readmission"
EXPERIMENT_NAME = "readmission"
CHAMPION = "champion"
CHALLENGER = "challenger"


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
