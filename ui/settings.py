"""The app's settings: READMISSION_* variables, read and checked in one place (bento/settings.py's layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator

from bento.settings import ReadmissionSettings, token

DEFAULT_API_URL = "http://127.0.0.1:3000"
DEFAULT_MODEL_CARD = Path(__file__).resolve().parents[1] / "docs" / "model-card.md"


class Settings(ReadmissionSettings):
    """Where the prediction service is and how long to wait for it."""

    api_url: str = Field(DEFAULT_API_URL, min_length=1, description="where the prediction service answers")
    timeout: float = Field(
        10.0, gt=0, validation_alias="READMISSION_UI_TIMEOUT", description="seconds to wait for one answer"
    )
    batch_rows: int = Field(
        1000,
        ge=1,
        le=1000,
        validation_alias="READMISSION_UI_BATCH_ROWS",
        description="patients per `/predict/batch` request (at most the service's limit)",
    )
    model_card: Path = Field(DEFAULT_MODEL_CARD, description="the model card shown under *About the model*")
    api_token: SecretStr | None = Field(
        None, repr=False, description="the service's bearer token, sent with every request; never shown"
    )

    _token = field_validator("api_token", mode="before")(token)

    @field_validator("api_url")
    @classmethod
    def _no_trailing_slash(cls, value: Any) -> Any:
        return value.rstrip("/")
