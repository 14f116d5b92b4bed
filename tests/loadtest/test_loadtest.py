"""The Locust load test (loadtest/): encounter generator, each scenario against the real service, distributed
runs, the Prometheus exporter and the SLO check. All traffic goes to 127.0.0.1; every run is bounded."""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from bento import features
from loadtest import encounters, slo
from tests import servers
from tests.helpers import poll

# serial: Locust runs measure latency and throughput against SLOs: alone, not beside another worker
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "loadtest" / "run.py"
TASKS = {
    "/predict [clinical]",
    "/predict [encoded]",
    "/v2/models/[model]/infer [1 row]",
    "/v2/models/[model]/infer [batch]",
    "/v2/models/[model]",
    "/feedback",
}
# quicker users than the default think time, so a 15 s run exercises every task
FAST = ["--think-min", "0.1", "--think-max", "0.5", "--batch-rows", "16"]


# ----------------------------------------------------------------------------------------------------------
# encounters (no service needed)


def test_sampled_encounters_are_valid_and_varied():
    sampler = encounters.DistributionSampler(encounters.spec_distributions())
    records = sampler.records(300, seed=1)
    assert all(features.validate(r) == r for r in records)
    assert len({json.dumps(r, sort_keys=True) for r in records}) == 300
    for name in ("age", "time_in_hospital", "diag_1", "admission_type_id", "num_medications"):
        assert len({r[name] for r in records}) > 3, name


def test_sampler_follows_the_stored_frequencies_and_never_sends_a_required_field_missing():
    distributions = encounters.spec_distributions()
    distributions["gender"] = {"null": 0.5, '"Female"': 0.4, '"Male"': 0.1}
    distributions["discharge_disposition_id"] = {"11": 0.5, "1": 0.3, "3": 0.2}  # 11 (death) is refused
    records = encounters.DistributionSampler(distributions).records(2000, seed=2)
    genders = [r["gender"] for r in records]
    assert None not in genders
    assert 0.72 < genders.count("Female") / len(genders) < 0.88  # 0.4 / 0.5
    assert {r["discharge_disposition_id"] for r in records} == {1, 3}


def test_pool_from_model_metadata_when_there_is_no_data(tmp_path, monkeypatch):
    metadata = tmp_path / "model_metadata.json"
    metadata.write_text(json.dumps({"field_distributions": encounters.spec_distributions()}))
    monkeypatch.setattr(encounters, "data_file", lambda: None)
    monkeypatch.delenv("LOADTEST_ENCOUNTERS", raising=False)
    monkeypatch.setenv("READMISSION_MODEL_METADATA", str(metadata))
    pool = encounters.load(count=200)
    assert str(metadata) in pool.source
    assert len(pool.records) == 200
    rng = random.Random(3)
    assert len({json.dumps(pool.sample(rng), sort_keys=True) for _ in range(50)}) > 30


def test_pool_from_the_spec_alone_as_a_last_resort(monkeypatch):
    monkeypatch.setattr(encounters, "data_file", lambda: None)
    monkeypatch.setattr(encounters, "model_metadata_file", lambda: None)
    monkeypatch.delenv("LOADTEST_ENCOUNTERS", raising=False)
    pool = encounters.load(count=100)
    assert pool.source == "feature specification"
    assert len({json.dumps(r, sort_keys=True) for r in pool.records}) == 100


def test_records_file_round_trip(tmp_path):
    records = encounters.DistributionSampler(encounters.spec_distributions()).records(20)
    path = encounters.write_records(records, tmp_path / "pool.jsonl.gz")
    pool = encounters.load(path)
    assert list(pool.records) == records and pool.path == path


def test_heldout_records_of_the_real_data(uci_zip, monkeypatch):
    monkeypatch.setenv("READMISSION_DATA", str(uci_zip))
    monkeypatch.delenv("LOADTEST_ENCOUNTERS", raising=False)
    pool = encounters.load()
    assert "held-out" in pool.source
    assert len(pool.records) > 10_000  # about 15% of the encounters
    assert len({json.dumps(r, sort_keys=True) for r in pool.records[:2000]}) == 2000


def test_encoded_forms_match_the_feature_spec():
    records = encounters.DistributionSampler(encounters.spec_distributions()).records(5, seed=4)
    expected = features.encode(records)
    for record, row in zip(records, expected, strict=True):
        np.testing.assert_array_equal(features.vector_from_encoded(encounters.encoded_form(record)), row)
    body = encounters.v2_infer_body(records, "abc")
    tensor = body["inputs"][0]
    assert tensor["shape"] == [5, len(features.COLUMNS)] and body["id"] == "abc"
    data = np.array([np.nan if v is None else v for v in tensor["data"]], dtype=np.float32).reshape(5, -1)
    np.testing.assert_array_equal(data, expected)
    assert all(v is None or math.isfinite(v) for v in tensor["data"])


# ----------------------------------------------------------------------------------------------------------
# SLO check (no service needed)


def _stats_csv(folder: Path, requests: int, failures: int, p95: float, rps: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "locust_stats.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "95%", "99%",
                         "Max Response Time", "Requests/s"])  # fmt: skip
        writer.writerow(["POST", "/predict [clinical]", requests, failures, 5, p95, p95, p95, rps])
        writer.writerow(["", "Aggregated", requests, failures, 5, p95, p95, p95, rps])
    return path


def test_slo_check_of_a_csv(tmp_path, capsys):
    _stats_csv(tmp_path / "good", 1000, 2, 120, 30.0)
    assert slo.main([str(tmp_path / "good")]) == 0
    assert "SLO check: PASSED" in capsys.readouterr().out
    assert slo.main([str(tmp_path / "good"), "--max-p95-ms", "100"]) == 1
    assert slo.main([str(tmp_path / "good"), "--min-rps", "50"]) == 1
    assert slo.main([str(tmp_path / "good"), "--max-failure-ratio", "0.001"]) == 1
    _stats_csv(tmp_path / "empty", 0, 0, 0, 0)
    assert slo.main([str(tmp_path / "empty")]) == 1
    assert "no request was made" in capsys.readouterr().out
    assert slo.main([str(tmp_path / "missing")]) == 2


# ----------------------------------------------------------------------------------------------------------
# real runs against the service on loopback


def _command(host: str, scenario: str, results: Path, *args: str, name: str | None = None) -> list[str]:
    return [sys.executable, str(RUN), "--host", host, "--scenario", scenario, "--results", str(results),
            "--name", name or scenario, *args]  # fmt: skip


def _run(command: list[str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, Path]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    folder = Path(command[command.index("--results") + 1]) / command[command.index("--name") + 1]
    return done, folder


def _stats(folder: Path) -> dict[str, dict[str, str]]:
    with (folder / "locust_stats.csv").open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def _assert_clean_run(done: subprocess.CompletedProcess, folder: Path, tasks: set[str] = TASKS) -> dict:
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "SLO check: PASSED" in done.stdout
    stats = _stats(folder)
    for name in tasks:
        assert int(stats[name]["Request Count"]) > 0, (name, stats.keys())
    assert set(stats) - {"Aggregated"} <= TASKS
    total = stats["Aggregated"]
    assert int(total["Failure Count"]) == 0, (folder / "locust_failures.csv").read_text()
    assert int(total["Request Count"]) > 50
    assert (folder / "report.html").stat().st_size > 10_000
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["passed"] and summary["total"]["failures"] == 0
    assert slo.main([str(folder)]) == 0  # the CSV check agrees with the in-run one
    return summary


@pytest.mark.slow
def test_constant_scenario(service, tmp_path):
    done, folder = _run(_command(service.url, "constant", tmp_path, "--users", "10", "--duration", "15",
                                 "--prometheus-port", "0", "--", *FAST))  # fmt: skip
    summary = _assert_clean_run(done, folder)
    assert summary["scenario"]["scenario"] == "constant"
    assert summary["scenario"]["settings"]["users"] == 10


@pytest.mark.slow
def test_step_scenario(service, tmp_path):
    done, folder = _run(_command(service.url, "step", tmp_path, "--users", "12", "--duration", "16",
                                 "--spawn-rate", "10", "--prometheus-port", "0",
                                 "--", "--step-count", "4", *FAST))  # fmt: skip
    summary = _assert_clean_run(done, folder, tasks=TASKS - {"/v2/models/[model]"})
    assert summary["scenario"]["scenario"] == "step"
    history = list(csv.DictReader((folder / "locust_stats_history.csv").open(newline="")))
    users = [int(row["User Count"]) for row in history if row["Name"] == "Aggregated"]
    assert {3, 6, 9, 12} <= set(users), users  # four steps of 3 users


@pytest.mark.slow
def test_stress_scenario_reports_the_breaking_point(service, tmp_path):
    # a p95 bound of 1 ms breaks at the first step: the run stops early and names the breaking point
    done, folder = _run(_command(service.url, "stress", tmp_path, "--users", "40", "--duration", "20",
                                 "--prometheus-port", "0", "--", "--stress-step-users", "5",
                                 "--stress-step-time", "6", "--stress-max-p95-ms", "1", *FAST))  # fmt: skip
    summary = _assert_clean_run(done, folder, tasks={"/predict [clinical]"})
    scenario = summary["scenario"]
    assert scenario["stop_reason"].startswith("breaking point"), scenario
    point = scenario["breaking_point"]
    assert point["users"] == 5 and point["rps"] > 0 and point["p95_ms"] > 1
    assert "breaking point: 5 users" in done.stdout


@pytest.mark.slow
def test_soak_scenario(service, tmp_path):
    done, folder = _run(_command(service.url, "soak", tmp_path, "--users", "8", "--duration", "15",
                                 "--prometheus-port", "0", "--", "--soak-window", "5", *FAST))  # fmt: skip
    summary = _assert_clean_run(done, folder, tasks=TASKS - {"/v2/models/[model]"})
    assert summary["scenario"]["scenario"] == "soak"
    assert summary["scenario"]["settings"]["duration"] == 15
    windows = summary["scenario"]["windows"]  # per-window figures (tests/loadtest/test_soak.py: the soak verdict)
    assert [w["index"] for w in windows] == [0, 1, 2], windows
    assert all(w["requests"] > 0 and w["failures"] == 0 and w["p99_ms"] > 0 for w in windows), windows
    assert sum(w["requests"] for w in windows) <= summary["total"]["requests"]
    assert "soak window 2: " in done.stdout


@pytest.mark.slow
def test_distributed_run_with_two_workers_and_prometheus_metrics(service, tmp_path):
    port = servers.free_port()
    command = _command(service.url, "constant", tmp_path, "--users", "10", "--duration", "18", "--workers", "2",
                       "--prometheus-port", str(port), "--", *FAST)  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def scrape() -> str:
        """The master's metrics once they count /predict, or "" (so far); a note once Locust has ended."""
        if process.poll() is not None:  # the run's own checks below say why
            return "(Locust ended before its metrics counted /predict)"
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.TransportError:
            return ""
        return text if 'locust_requests_total{method="POST",name="/predict [clinical]"}' in text else ""

    try:
        scraped = poll(scrape, 60, "Locust's Prometheus metrics counting /predict", interval=1)
        stdout, stderr = process.communicate(timeout=150)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    folder = tmp_path / "constant"
    summary = _assert_clean_run(subprocess.CompletedProcess(command, process.returncode, stdout, stderr), folder)
    workers = summary["workers"]
    assert len(workers) == 2, workers
    assert all(w["requests"] > 0 for w in workers), workers
    assert sum(w["requests"] for w in workers) == summary["total"]["requests"]
    assert "workers reported: 2" in stdout
    assert "locust_workers 2.0" in scraped, scraped[:2000]
    assert "locust_users" in scraped and 'locust_scenario_info{scenario="constant"} 1.0' in scraped
    assert "locust_response_time_seconds_count" in scraped


@pytest.mark.slow
def test_slo_check_fails_against_a_stopped_service(tmp_path):
    closed = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    done, folder = _run(_command(closed, "constant", tmp_path, "--users", "4", "--duration", "6",
                                 "--prometheus-port", "0", "--", *FAST))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SLO check: FAILED" in done.stdout and "failure ratio 100.00%" in done.stdout
    summary = json.loads((folder / "summary.json").read_text())
    assert not summary["passed"] and summary["total"]["requests"] == summary["total"]["failures"] > 0
    assert slo.main([str(folder)]) == 1
