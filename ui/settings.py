"""The app's settings, read from the environment in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:3000"
DEFAULT_MODEL_CARD = Path(__file__).resolve().parents[1] / "docs" / "model-card.md"


@dataclass(frozen=True)
class Settings:
    """Where the prediction service is and how long to wait for it."""

    api_url: str = DEFAULT_API_URL
    timeout: float = 10.0  # seconds for one request
    batch_rows: int = 1000  # patients per /predict/batch request (the service's limit)
    model_card: Path = DEFAULT_MODEL_CARD
    api_token: str | None = field(default=None, repr=False)  # the service's bearer token; never shown

    @classmethod
    def from_env(cls) -> Settings:
        """READMISSION_API_URL, READMISSION_UI_TIMEOUT, READMISSION_UI_BATCH_ROWS, READMISSION_MODEL_CARD,
        READMISSION_API_TOKEN."""
        timeout = float(os.environ.get("READMISSION_UI_TIMEOUT") or cls.timeout)
        batch_rows = int(os.environ.get("READMISSION_UI_BATCH_ROWS") or cls.batch_rows)
        if timeout <= 0 or not 1 <= batch_rows <= 1000:
            raise ValueError("READMISSION_UI_TIMEOUT must be > 0 and READMISSION_UI_BATCH_ROWS between 1 and 1000")
        return cls(
            api_url=(os.environ.get("READMISSION_API_URL") or DEFAULT_API_URL).rstrip("/"),
            timeout=timeout,
            batch_rows=batch_rows,
            model_card=Path(os.environ.get("READMISSION_MODEL_CARD") or DEFAULT_MODEL_CARD),
            api_token=os.environ.get("READMISSION_API_TOKEN", "").strip() or None,
        )
