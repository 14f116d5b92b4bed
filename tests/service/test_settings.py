"""The settings layer (bento/settings.py, ui/settings.py, training/settings.py): defaults, the checks at start-up,
the secrets kept out of every rendering, and the README's Configuration table generated from the classes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bento.quality.windows import WINDOWS
from bento.settings import MIB, PREFIX, ReadmissionSettings, ServiceSettings, SettingsError
from training.settings import PROJECT_ROOT, TrainingSettings
from ui.settings import Settings as UISettings

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("ci_config_table", REPO / ".ci" / "config_table.py")
config_table = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(config_table)
CLASSES: list[type[ReadmissionSettings]] = [cls for cls, _ in config_table.READERS]
TOKEN = "tok-6f1c2a9e"
PASSWORD = "pw-0b7d44"  # pragma: allowlist secret


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No variable of any settings class from the machine running the tests."""
    for cls in CLASSES:
        for name in cls.model_fields:
            monkeypatch.delenv(cls.variable(name), raising=False)


def test_the_defaults_are_those_of_a_laptop():
    service = ServiceSettings.from_env()
    assert (service.model_tag, service.v2_model_name, service.workers) == ("readmission:latest", "readmission", 1)
    assert (service.max_batch_rows, service.max_infer_rows, service.max_body_bytes) == (1000, 10_000, 16 * MIB)
    assert (service.body_timeout_seconds, service.top_factors, service.drain_seconds) == (10, 5, 10)
    assert not service.tracing and not service.access_log
    assert (service.grpc_port, service.grpc_host, service.api_token) == (8081, "0.0.0.0", None)
    assert (service.metrics_port, service.metrics_host) == (8082, "0.0.0.0")  # apart from 3000 and 8081
    assert (service.home, service.prediction_log) == (Path.home() / ".readmission", "")
    assert (service.prediction_log_queue_rows, service.prediction_log_features) == (100_000, False)
    assert (service.prediction_log_retention_days, service.monitor_seconds, service.monitor_cpus) == (30, 60, None)
    assert service.prediction_log_keep_days == max(WINDOWS.values()) + 30  # the longest window + the outcome delay
    ui = UISettings.from_env()
    assert (ui.api_url, ui.timeout, ui.batch_rows, ui.api_token) == ("http://127.0.0.1:3000", 10.0, 1000, None)
    assert ui.model_card == PROJECT_ROOT / "docs" / "model-card.md"
    training = TrainingSettings.from_env()
    assert training.home == PROJECT_ROOT / ".readmission" and training.data is None
    assert training.cache == Path.home() / ".cache" / "readmission"
    assert training.tracking_uri == f"sqlite:///{PROJECT_ROOT / '.readmission' / 'mlflow.db'}"
    assert training.artifact_location == (PROJECT_ROOT / ".readmission" / "mlartifacts").as_uri()


def test_values_come_from_the_prefixed_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("READMISSION_WORKERS", "3")
    monkeypatch.setenv("READMISSION_TRACING", "true")
    monkeypatch.setenv("READMISSION_GRPC_PORT", "0")  # 0: no gRPC
    monkeypatch.setenv("READMISSION_PREDICTION_LOG", " off\n")
    monkeypatch.setenv("READMISSION_MAX_BATCH_ROWS", "")  # empty: the default
    service = ServiceSettings.from_env()
    assert (service.workers, service.tracing, service.grpc_port, service.prediction_log) == (3, True, 0, "off")
    assert service.max_batch_rows == 1000
    for cores, parsed in (("0", {0}), (" 0-1 ", {0, 1}), ("1,0", {0, 1}), ("0-0,0", {0})):
        monkeypatch.setenv("READMISSION_MONITOR_CPUS", cores)  # Linux's cpu list, as taskset -c takes it
        assert ServiceSettings.from_env().monitor_cpus == frozenset(parsed)
    monkeypatch.setenv("READMISSION_UI_BATCH_ROWS", "50")
    monkeypatch.setenv("READMISSION_API_URL", "http://predictor:8080/")
    assert (UISettings.from_env().batch_rows, UISettings.from_env().api_url) == (50, "http://predictor:8080")
    monkeypatch.setenv("READMISSION_HOME", str(tmp_path / "state" / ".." / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    training = TrainingSettings.from_env()
    assert training.home == tmp_path / "home"
    assert (training.tracking_uri, training.artifact_location) == ("http://mlflow:5000", None)


def test_settings_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        ServiceSettings.from_env().workers = 2


@pytest.mark.parametrize(
    ("cls", "variable", "value", "reason"),
    [
        (ServiceSettings, "READMISSION_WORKERS", "0", "greater than or equal to 1"),
        (ServiceSettings, "READMISSION_WORKERS", "two", "valid integer"),
        (ServiceSettings, "READMISSION_GRPC_PORT", "65536", "less than or equal to 65535"),
        (ServiceSettings, "READMISSION_GRPC_PORT", "-1", "greater than or equal to 0"),
        (ServiceSettings, "READMISSION_METRICS_PORT", "65536", "less than or equal to 65535"),
        (ServiceSettings, "READMISSION_MAX_BODY_BYTES", "1e6", "valid integer"),
        (ServiceSettings, "READMISSION_BODY_TIMEOUT_SECONDS", "0", "greater than or equal to 1"),
        (ServiceSettings, "READMISSION_TRACING", "maybe", "valid boolean"),
        (ServiceSettings, "READMISSION_PREDICTION_LOG_RETENTION_DAYS", "0", "greater than or equal to 1"),
        (ServiceSettings, "READMISSION_MONITOR_SECONDS", "-5", "greater than or equal to 1"),
        (ServiceSettings, "READMISSION_MONITOR_CPUS", "one", "'one' is not a core or a range of cores"),
        (ServiceSettings, "READMISSION_MONITOR_CPUS", "3-2", "'3-2' is not a core or a range of cores"),
        (ServiceSettings, "READMISSION_MONITOR_CPUS", "0,", "'' is not a core or a range of cores"),
        (ServiceSettings, "READMISSION_MONITOR_CPUS", "4096", "the machine has no core 4096"),
        (UISettings, "READMISSION_UI_TIMEOUT", "0", "greater than 0"),
        (UISettings, "READMISSION_UI_BATCH_ROWS", "1001", "less than or equal to 1000"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_the_reason(monkeypatch, cls, variable, value, reason):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        cls.from_env()
    message = str(refused.value)
    assert message.startswith(f"{variable}={value!r}: ") and reason in message and "\n" not in message


def test_every_bad_value_is_named_at_once(monkeypatch):
    monkeypatch.setenv("READMISSION_WORKERS", "0")
    monkeypatch.setenv("READMISSION_TOP_FACTORS", "many")
    with pytest.raises(SettingsError, match=r"READMISSION_WORKERS='0': .*; READMISSION_TOP_FACTORS='many': "):
        ServiceSettings.from_env()


@pytest.mark.parametrize("cls", [ServiceSettings, UISettings])
def test_the_token_never_shows(monkeypatch, cls):
    monkeypatch.setenv("READMISSION_API_TOKEN", f"  {TOKEN}\n")
    settings = cls.from_env()
    assert settings.api_token.get_secret_value() == TOKEN  # unwrapped only where it is compared or sent
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert TOKEN not in shown
    monkeypatch.setenv("READMISSION_API_TOKEN", "  ")
    assert cls.from_env().api_token is None  # blank: no token


def test_the_prediction_log_password_stays_out_of_repr(monkeypatch):
    monkeypatch.setenv("READMISSION_PREDICTION_LOG", f"postgresql://readmission:{PASSWORD}@db/readmission")
    settings = ServiceSettings.from_env()
    assert PASSWORD in settings.prediction_log and PASSWORD not in repr(settings) and PASSWORD not in str(settings)


def test_the_service_stops_at_start_with_one_line(tmp_path):
    env = {**os.environ, "READMISSION_WORKERS": "0", "READMISSION_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", "import bento.service"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "readmission: READMISSION_WORKERS='0': input should be greater than or equal to 1"


def test_every_field_is_a_documented_variable():
    for cls in CLASSES:
        for name, field in cls.model_fields.items():
            variable = cls.variable(name)
            assert field.description, f"{cls.__name__}.{name}: no description for the README"
            assert variable.startswith(PREFIX) or variable == "MLFLOW_TRACKING_URI", variable


def test_the_readme_table_is_generated_from_the_settings():
    assert config_table.main(["--check"]) == 0, "README.md's Configuration table: run `python .ci/config_table.py`"
    table = config_table.table()
    for cls in CLASSES:
        for name in cls.model_fields:
            assert f"| `{cls.variable(name)}` |" in table
