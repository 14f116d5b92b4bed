"""Service configuration, read from the environment once (the README's Configuration table)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
# The model's one name: MLflow's registered model, the BentoML model, the V2 model (READMISSION_V2_MODEL_NAME).
MODEL_NAME = "readmission"


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {value!r}") from error


def _bool(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ServiceSettings:
    """What the service reads from READMISSION_* variables."""

    model_tag: str = f"{MODEL_NAME}:latest"
    v2_model_name: str = MODEL_NAME
    workers: int = 1
    max_batch_rows: int = 1000
    max_infer_rows: int = 10_000
    max_body_bytes: int = 16 * MIB
    body_timeout_seconds: int = 10
    top_factors: int = 5
    tracing: bool = False
    # after SIGTERM: keep serving until no request for a second, at most this long (bento/drain.py)
    drain_seconds: int = 10
    # the Open Inference Protocol over gRPC (bento/grpc_server.py) in every worker; port 0: no gRPC
    grpc_port: int = 8081
    grpc_host: str = "0.0.0.0"  # as BentoML's HTTP default; tests and `make serve` bind 127.0.0.1
    # bearer token of the prediction routes (bento/auth.py); None: no check. Kept out of repr: never logged.
    api_token: str | None = field(default=None, repr=False)
    # state of the service: the embedded prediction log (bento/log_store.py) lives here
    home: Path = field(default_factory=lambda: Path.home() / ".readmission")
    # the prediction log: empty = SQLite under `home`; a postgresql:// URL; a SQLite path; "off". May hold a
    # password: kept out of repr.
    prediction_log: str = field(default="", repr=False)
    prediction_log_queue_rows: int = 100_000  # rows waiting for the store; more are dropped, counted
    prediction_log_features: bool = False  # keep the encoded row of each prediction (for later analysis)
    prediction_log_retention_days: int = 30  # encoded rows older than this are erased
    monitor_seconds: int = 60  # how often live performance is recomputed from the log (bento/live.py)

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """Settings from the environment, defaults where unset."""
        defaults = cls()
        return cls(
            model_tag=os.environ.get("READMISSION_MODEL_TAG", defaults.model_tag),
            v2_model_name=os.environ.get("READMISSION_V2_MODEL_NAME", defaults.v2_model_name),
            workers=_int("READMISSION_WORKERS", defaults.workers),
            max_batch_rows=_int("READMISSION_MAX_BATCH_ROWS", defaults.max_batch_rows),
            max_infer_rows=_int("READMISSION_MAX_INFER_ROWS", defaults.max_infer_rows),
            max_body_bytes=_int("READMISSION_MAX_BODY_BYTES", defaults.max_body_bytes),
            body_timeout_seconds=_int("READMISSION_BODY_TIMEOUT_SECONDS", defaults.body_timeout_seconds),
            top_factors=_int("READMISSION_TOP_FACTORS", defaults.top_factors),
            tracing=_bool("READMISSION_TRACING"),
            drain_seconds=_int("READMISSION_DRAIN_SECONDS", defaults.drain_seconds),
            grpc_port=_int("READMISSION_GRPC_PORT", defaults.grpc_port),
            grpc_host=os.environ.get("READMISSION_GRPC_HOST", defaults.grpc_host),
            api_token=os.environ.get("READMISSION_API_TOKEN", "").strip() or None,
            home=Path(os.environ.get("READMISSION_HOME") or defaults.home),
            prediction_log=os.environ.get("READMISSION_PREDICTION_LOG", defaults.prediction_log).strip(),
            prediction_log_queue_rows=_int("READMISSION_PREDICTION_LOG_QUEUE_ROWS", defaults.prediction_log_queue_rows),
            prediction_log_features=_bool("READMISSION_PREDICTION_LOG_FEATURES"),
            prediction_log_retention_days=_int(
                "READMISSION_PREDICTION_LOG_RETENTION_DAYS", defaults.prediction_log_retention_days
            ),
            monitor_seconds=_int("READMISSION_MONITOR_SECONDS", defaults.monitor_seconds),
        )
