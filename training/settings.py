"""Training-side configuration: READMISSION_* variables and MLFLOW_TRACKING_URI (bento/settings.py's layer)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from bento.settings import MODEL_NAME as MODEL_NAME  # the one name, beside the service's settings
from bento.settings import ReadmissionSettings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The team's copy of the UCI archive, beside the checkout (the Makefile passes it to training as READMISSION_DATA).
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "dataset_diabetes.zip"
EXPERIMENT_NAME = "readmission"
CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_CARD_FILE = "model-card.md"  # the champion's card, as `readmission train` writes it under READMISSION_HOME


def data_file() -> Path | None:
    """The UCI data already on this machine: READMISSION_DATA, else the team's shared copy; None where absent.

    What the tests, the load test and the benchmark use (training itself also downloads: `training.data.locate`).
    """
    candidate = TrainingSettings.from_env().data or SHARED_DATA
    return candidate if candidate.is_file() else None


class TrainingSettings(ReadmissionSettings):
    """Where the data comes from and where MLflow keeps runs and models."""

    home: Path = Field(
        PROJECT_ROOT / ".readmission", description="the embedded MLflow store (`mlflow.db`, `mlartifacts/`)"
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow of training, the registry and import (e.g. `http://mlflow:5000`); "
        "unset: `sqlite:///$READMISSION_HOME/mlflow.db`",
    )
    data: Path | None = Field(
        None,
        description="the UCI zip as distributed, or the extracted `diabetic_data.csv`; unset: the team's copy "
        "`../shared/data/dataset_diabetes.zip` when present (Makefile), else downloaded",
    )
    cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "readmission",
        description="where a downloaded UCI archive is kept",
    )

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        return home.resolve()

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI, else the embedded SQLite store under `home`."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Where the embedded store keeps artifacts; None with MLFLOW_TRACKING_URI (the server decides)."""
        return None if self.mlflow_tracking_uri else (self.home / "mlartifacts").as_uri()
