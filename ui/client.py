"""HTTP calls to the prediction service; every failure becomes a message a clinician can act on.

Request and response bodies (patient data) are never logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ui.settings import Settings


class ServiceError(Exception):
    """The service gave no usable answer; the message says what happened and what to do."""


class Client:
    """The prediction service at `settings.api_url`, with a timeout on every request."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.api_url
        self.timeout = settings.timeout
        token = settings.api_token
        self.headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}

    def predict(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """One patient's answer with its top factors (`POST /predict?explain=true`)."""
        answer = self._send("POST", "/predict?explain=true", dict(record))
        if not isinstance(answer, dict) or not {"probability", "risk_band", "model"} <= answer.keys():
            raise ServiceError(_UNEXPECTED)
        return answer

    def predict_batch(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Answers for a list of patients, in order (`POST /predict/batch`), and the model."""
        answer = self._send("POST", "/predict/batch", [dict(r) for r in records])
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(records):
            raise ServiceError(_UNEXPECTED)
        return answer

    def performance(self) -> dict[str, Any]:
        """Live performance per model version and window beside the training figures (`GET /performance`)."""
        answer = self._send("GET", "/performance")
        if not isinstance(answer, dict) or not all(isinstance(answer.get(k), dict) for k in ("live", "training")):
            raise ServiceError(_UNEXPECTED)
        return answer

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=self.timeout)
        except httpx.TimeoutException as error:
            raise ServiceError(
                f"The risk service did not answer within {self.timeout:g} seconds. It may be busy: "
                "your values are kept, try again in a moment."
            ) from error
        except (httpx.TransportError, httpx.InvalidURL) as error:
            raise ServiceError(
                f"The risk service cannot be reached at {self.url}. It may be down or restarting: "
                "your values are kept, try again in a minute and tell IT if it persists."
            ) from error
        if response.status_code == 401:
            raise ServiceError("The risk service refused this page's API token (READMISSION_API_TOKEN). Tell IT.")
        if response.status_code == 503:
            raise ServiceError("The risk service is starting up and not ready yet. Try again in a minute.")
        if 400 <= response.status_code < 500:
            raise ServiceError(f"The risk service did not accept the record: {_error_text(response)}")
        if response.status_code >= 500:
            raise ServiceError(
                f"The risk service failed (HTTP {response.status_code}). Try again later and tell IT if it persists."
            )
        try:
            return response.json()
        except ValueError as error:
            raise ServiceError(_UNEXPECTED) from error


_UNEXPECTED = "The risk service sent an answer this page does not understand. Tell IT; no estimate is shown."


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error) if error else f"HTTP {response.status_code}"
