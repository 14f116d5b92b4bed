"""Configuration: READMISSION_* variables, read and checked once (the README's Configuration table).

`ReadmissionSettings` is the one settings layer (pydantic-settings) of the service, the UI (ui/settings.py) and
training (training/settings.py): each field is a variable, its description the README's row (.ci/config_table.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024
# The model's one name: MLflow's registered model, the BentoML model, the V2 model (READMISSION_V2_MODEL_NAME).
MODEL_NAME = "readmission"
PREFIX = "READMISSION_"


class SettingsError(ValueError):
    """A variable out of range or malformed: its name and the reason, never a secret's value."""


def strip(value: Any) -> Any:
    """Surrounding blanks and newlines off a text value (a token pasted from a file)."""
    return value.strip() if isinstance(value, str) else value


def token(value: Any) -> Any:
    """A bearer token without surrounding blanks; a blank one is none."""
    return strip(value) or None


def cpu_list(value: Any) -> Any:
    """Cores as Linux writes them ("1", "2-3", "0,2-3") as a set of core numbers; ValueError where malformed or
    beyond the machine's cores."""
    if not isinstance(value, str):
        return value
    cores: set[int] = set()
    for part in value.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or int(high if dash else low) < int(low):
            raise ValueError(f"{part!r} is not a core or a range of cores: write e.g. 1, 2-3 or 0,2-3")
        cores.update(range(int(low), int(high if dash else low) + 1))
    beyond = sorted(core for core in cores if core >= (os.cpu_count() or 1))
    if beyond:
        raise ValueError(f"the machine has no core {beyond[0]} (cores 0-{(os.cpu_count() or 1) - 1})")
    return frozenset(cores)


class ReadmissionSettings(BaseSettings):
    """READMISSION_<FIELD> variables; unset or empty: the default. Immutable once read."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, frozen=True)

    @classmethod
    def from_env(cls) -> Self:
        """The settings from the environment; SettingsError (one line) where a value is bad."""
        try:
            return cls()
        except ValidationError as error:
            raise SettingsError("; ".join(cls._problem(detail) for detail in error.errors())) from None

    @classmethod
    def variable(cls, name: str) -> str:
        """The environment variable of field `name`."""
        alias = cls.model_fields[name].validation_alias
        return alias if isinstance(alias, str) else PREFIX + name.upper()

    @classmethod
    def _problem(cls, detail: ErrorDetails) -> str:
        names = {name.lower(): name for name in cls.model_fields} | {
            cls.variable(name).lower(): name for name in cls.model_fields
        }
        name = names.get(str(detail["loc"][0]).lower()) if detail["loc"] else None
        reason = detail["msg"][:1].lower() + detail["msg"][1:]
        if name is None:
            return f"{cls.__name__}: {reason}"
        shown = "" if cls.model_fields[name].repr is False else f"={detail['input']!r}"  # secrets: never the value
        return f"{cls.variable(name)}{shown}: {reason}"


class ServiceSettings(ReadmissionSettings):
    """What the service reads."""

    model_tag: str = Field(
        f"{MODEL_NAME}:latest", min_length=1, description="the BentoML model the service loads (fixed in a built Bento)"
    )
    v2_model_name: str = Field(MODEL_NAME, min_length=1, description="the model name in V2 paths")
    workers: int = Field(1, ge=1, description="service worker processes (one XGBoost thread each)")
    max_batch_rows: int = Field(1000, ge=1, description="patients per `/predict/batch`")
    max_infer_rows: int = Field(10_000, ge=1, description="rows per V2 infer request")
    max_body_bytes: int = Field(16 * MIB, ge=1, description="request body limit (413 above)")
    keep_freed_mb: int = Field(
        256,
        ge=0,
        le=2047,
        description="freed memory a worker keeps for its next requests instead of returning it to the system at "
        "once: large requests then touch no fresh pages (a 1,000-row JSON request faulted about 2,000 and cost "
        "nearly twice the CPU); `0`: the C library's defaults",
    )
    body_timeout_seconds: int = Field(
        10, ge=1, description="the whole request body must arrive within this (408 after, connection closed)"
    )
    top_factors: int = Field(5, ge=1, description="factors returned with `explain=true`")
    tracing: bool = Field(
        False,
        description="`true` turns BentoML's OpenTelemetry spans back on (they cost a quarter of a single-row request)",
    )
    access_log: bool = Field(
        False,
        description="`true` turns BentoML's access log back on: a line per HTTP request (a tenth of a single-row call)",
    )
    drain_seconds: int = Field(
        10, ge=0, description="after SIGTERM: serve on, not ready, until requests stop for 1 s or this passes"
    )
    grpc_port: int = Field(
        8081,
        ge=0,
        le=65535,
        description="the Open Inference Protocol over gRPC in every worker (they share the port); `0`: none",
    )
    grpc_host: str = Field(
        "0.0.0.0", min_length=1, description="the gRPC listening address (`make serve`/`make up`: `127.0.0.1`)"
    )
    api_token: SecretStr | None = Field(
        None,
        repr=False,
        description="bearer token required on `/predict`, `/predict/batch`, `/feedback`, `/performance`, "
        "`/v2/models/...` (not `.../ready`) and gRPC; unset: no check. Never logged",
    )
    home: Path = Field(
        default_factory=lambda: Path.home() / ".readmission",
        description="the service's state: the embedded prediction log (SQLite) lives here",
    )
    prediction_log: str = Field(
        "",
        repr=False,
        description="where predictions are logged: unset: SQLite under `READMISSION_HOME`; a `postgresql://` URL; "
        "a SQLite path; `off`. May hold a password: never shown",
    )
    prediction_log_queue_rows: int = Field(
        100_000, ge=1, description="predictions waiting for the log's store; more are dropped, counted"
    )
    prediction_log_features: bool = Field(
        False, description="keep the encoded row of each prediction in the log (for later analysis)"
    )
    prediction_log_retention_days: int = Field(30, ge=1, description="encoded rows older than this are erased")
    prediction_log_keep_days: int = Field(
        120,
        ge=1,
        description="predictions older than this are erased with their outcomes, in batches; the default is the "
        "longest live window (90 days) plus the 30 days outcomes take to arrive",
    )
    shadow: Literal["auto", "off"] = Field(
        "auto",
        description="`auto`: where the champion was imported with a challenger (`readmission import`), every served "
        "row is also scored by the challenger, off the request path, into the prediction log; `off`: never",
    )
    monitor_seconds: int = Field(
        60,
        ge=1,
        description="how often live performance is refreshed: one worker of the deployment (the lease holder) "
        "recomputes it from the log when outcomes changed, every worker serves the stored figures",
    )
    monitor_cpus: Annotated[frozenset[int] | None, NoDecode] = Field(
        None,
        description="cores (`1`, `2-3`, `0,2-3`) the process computing the live figures is pinned to, at the lowest "
        "priority: give it a core the workers do not serve on; unset: the worker's",
    )
    header_timeout_seconds: int = Field(
        10,
        ge=1,
        description="a request's headers must be complete within this of its connection opening or the previous "
        "answer (closed after); gRPC: the connection's handshake",
    )
    idle_timeout_seconds: int = Field(
        5,
        ge=1,
        description="an HTTP connection with nothing sent or in flight for this long is closed; "
        "a gRPC one within twice this",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="open HTTP connections per worker; one opened above it is answered 503 with `Connection: close` "
        "and `Retry-After` (gRPC: refused), the others are served on",
    )
    metrics_port: int = Field(
        8082,
        ge=0,
        le=65535,
        description="Prometheus's `/metrics` in every worker (they share the port), apart from the HTTP and gRPC "
        "ports; `0`: none",
    )
    metrics_host: str = Field(
        "0.0.0.0", min_length=1, description="the metrics listening address (`make serve`/`make up`: `127.0.0.1`)"
    )

    _token = field_validator("api_token", mode="before")(token)
    _strip = field_validator("prediction_log", mode="before")(strip)
    _cpus = field_validator("monitor_cpus", mode="before")(cpu_list)
