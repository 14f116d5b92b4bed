"""The soak run (loadtest/soak.py) and the "no patient data in the service log" check (loadtest/logscan.py).

The unit tests show each check can fail: the soak verdict on made-up figures, the per-window statistics of the
soak shape, the log scan on a line that echoes a request body. The slow test is the CI soak: about two
minutes of mixed `/predict` and V2 traffic against a service of its own (so its log holds only this run),
then the three soak criteria and a scan of that log for every distinctive value the run could have sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest import encounters, logscan, soak
from tests import servers
from tests.helpers import bentoml_env

# serial: p99 drift and memory growth over two minutes of load: alone, not beside another worker
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[2]
SOAK = REPO / "loadtest" / "soak.py"
CI_DURATION, CI_WINDOW = 120, 30
ACCESS_LOG = "[entry_service:readmission:1] 127.0.0.1:51876 (scheme=http,method=POST,path=/predict,type=application/json,length=1075) (status=200,type=application/json,length=172) 250.830ms"  # noqa: E501


# ----------------------------------------------------------------------------------------------------------
# the log scan can find what it looks for


def _records() -> list[dict]:
    records = encounters.DistributionSampler(encounters.spec_distributions()).records(200, seed=7)
    return [r for r in records if "." in r["diag_1"] or "." in (r["diag_2"] or "")][:20]


def test_log_scan_finds_a_logged_request_body():
    records = _records()
    assert records, "the sampler yields records with a dotted ICD-9 code"
    bare, short = logscan.patient_values(records)
    record = records[0]
    log = [
        f"2026-01-01T00:00:00+0000 [INFO] {ACCESS_LOG}",
        f"2026-01-01T00:00:01+0000 [ERROR] [entry_service:readmission:1] bad body: {json.dumps(record)}",
        f"2026-01-01T00:00:02+0000 [WARNING] [readmission] refused {record!r}",
        f"2026-01-01T00:00:03+0000 [INFO] [readmission] specialty={record['medical_specialty'] or 'Cardiology'}",
        f"2026-01-01T00:00:04+0000 [INFO] [readmission] payer_code={records[0]['payer_code'] or 'MC'}",
    ]
    hits = logscan.scan(log, bare, short | {"MC"})
    assert [hit.line for hit in hits][:3] == [2, 3, 4]
    assert hits[0].value in {record["diag_1"], record["diag_2"], record["age"], record["race"]} | {
        record["medical_specialty"]
    }


def test_log_scan_ignores_what_is_not_a_patient_value():
    bare, short = logscan.patient_values([{"diag_1": "250.83", "age": "[70-80)", "payer_code": "MC", "race": "Other"}])
    assert bare == {"250.83", "[70-80)"} and short == {"MC"}  # "Other" is no tell
    clean = [
        f"2026-01-01T00:00:00+0000 [INFO] {ACCESS_LOG}",  # a latency of 250.830 ms is not the code 250.83
        "2026-01-01T00:00:00+0000 [INFO] [cli] MC and Other words, 1250.83 and 250.831",
        '2026-01-01T00:00:00+0000 [INFO] [cli] inside longer tokens: x[70-80)y, "MCX"',
    ]
    assert logscan.scan(clean, bare, short) == []
    assert [h.value for h in logscan.scan(['{"payer_code": "MC"}', "age: [70-80)"], bare, short)] == ["MC", "[70-80)"]


# ----------------------------------------------------------------------------------------------------------
# the soak shape measures each window; the verdict fails when a criterion fails


SHAPE_CHECK = """
import json, sys
from types import SimpleNamespace
from locust.stats import RequestStats
from loadtest.shapes import ScenarioSettings, SoakShape

settings = ScenarioSettings(scenario="soak", users=3, duration=3.0, soak_window=1.0)
shape = SoakShape(settings)
stats = RequestStats()
shape.runner = SimpleNamespace(stats=stats, user_count=3)
shape.reset_time()
first_tick = shape.tick()  # window 0 opens
for ms in [10] * 98 + [400, 500]:
    stats.log_request("POST", "/predict", ms, 100)
stats.log_error("POST", "/predict", "boom")
shape.start_time -= 1.0  # one second later: window 0 ends, window 1 opens
shape.tick()
for _ in range(50):
    stats.log_request("POST", "/predict", 20, 100)
shape.start_time -= 2.0  # the duration is over: window 1 is measured last
last_tick = shape.tick()
print(json.dumps({"first_tick": first_tick, "last_tick": last_tick, "report": shape.report()}))
"""


def test_soak_shape_measures_each_window():
    # in a process of its own: importing Locust monkey-patches the process (gevent)
    done = subprocess.run([sys.executable, "-c", SHAPE_CHECK], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first_tick"] == [3, 5.0] and result["last_tick"] is None
    first, second = result["report"]["windows"]
    assert (first["index"], first["requests"], first["failures"], first["p50_ms"]) == (0, 100, 1, 10)
    assert first["p99_ms"] == 500 and first["users"] == 3 and not first["partial"]
    assert (second["index"], second["requests"], second["failures"], second["p99_ms"]) == (1, 50, 0, 20)
    assert (first["seconds"], second["seconds"]) == (1.0, 2.0) and first["rps"] == pytest.approx(100, rel=0.01)
    assert result["report"]["settings"]["soak_window"] == 1.0


def _summary(p99s: list[float], failures: int = 0) -> dict:
    windows = [
        {"index": i, "started": 1000.0 + 60 * i, "ended": 1060.0 + 60 * i, "p99_ms": p, "partial": False}
        for i, p in enumerate(p99s)
    ]
    endpoints = [
        {"name": "/predict [clinical]", "requests": 600},
        {"name": "/v2/models/[model]/infer [1 row]", "requests": 600},
    ]
    return {
        "total": {"requests": 1200, "failures": failures, "rps": 10.0},
        "endpoints": endpoints,
        "scenario": {"scenario": "soak", "windows": windows},
    }


def _samples(start_mib: float, end_mib: float) -> list[dict]:
    steps = 19
    return [
        {
            "time": 1000.0 + 10 * i,
            "rss_bytes": (start_mib + (end_mib - start_mib) * i / steps) * 2**20,
            "cpu_seconds": i,
        }
        for i in range(steps + 1)
    ]


def test_soak_verdict_passes_and_fails_on_each_criterion():
    good = soak.verdict(_summary([40, 30, 35]), _samples(400, 404))
    assert all(check["passed"] for check in good["checks"].values()), good["checks"]
    assert good["p99_ratio"] == 0.875 and good["mixed_traffic"] and good["duration_seconds"] == 180
    assert 0 < good["rss_growth_percent"] < 10
    assert good["service_cpu_cores"] == pytest.approx(0.1)

    assert not soak.verdict(_summary([40, 30, 35], failures=1), _samples(400, 404))["checks"]["zero_failures"]["passed"]
    assert not soak.verdict(_summary([40, 30, 61]), _samples(400, 404))["checks"]["p99_stable"]["passed"]
    leaking = soak.verdict(_summary([40, 30, 35]), _samples(300, 400))
    assert not leaking["checks"]["memory_flat"]["passed"] and leaking["rss_growth_percent"] > 10
    assert not soak.verdict(_summary([40]), _samples(400, 400))["checks"]["p99_stable"]["passed"]  # one window
    assert not soak.verdict(_summary([40, 40]), [])["checks"]["memory_flat"]["passed"]  # no samples


def test_unlabelled_values_read_the_resident_memory():
    text = (
        "# TYPE readmission_process_resident_memory_bytes gauge\nreadmission_process_resident_memory_bytes 4.99e+08\n"
    )
    values = soak.unlabelled_values(text)
    assert values[soak.RSS_METRIC] == 4.99e08
    assert soak.CPU_METRIC not in values


# ----------------------------------------------------------------------------------------------------------
# the CI soak against a service of its own


@pytest.fixture
def own_service(bento_home, tmp_path):
    """`bentoml serve` of the source tree with its own home (its own Prometheus folder) and its own log."""
    home = tmp_path / "bentoml-home"
    home.mkdir()
    (home / "models").symlink_to(bento_home["home"] / "models", target_is_directory=True)
    port = servers.free_port()
    command = [str(Path(sys.executable).parent / "bentoml"), "serve", "bento.service:ReadmissionService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    # the access log on (READMISSION_ACCESS_LOG): the run checks it keeps up and holds no patient value
    server = servers.start(
        command, port, bentoml_env(home) | {"READMISSION_ACCESS_LOG": "true"}, tmp_path / "service.log"
    )
    yield server
    server.stop()


@pytest.mark.slow
def test_soak_ci(own_service, tmp_path, figure):
    started = time.monotonic()
    command = [sys.executable, str(SOAK), "--host", own_service.url, "--metrics", str(own_service.metrics),
               "--duration", str(CI_DURATION),
               "--window", str(CI_WINDOW), "--results", str(tmp_path / "results"), "--name", "soak",
               "--service-log", str(own_service.log)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=CI_DURATION + 300, cwd=REPO)
    output = done.stdout + done.stderr
    folder = tmp_path / "results" / "soak"
    result = json.loads((folder / "soak.json").read_text())

    figure("duration s", result["duration_seconds"])
    figure("requests", result["requests"])
    figure("req/s", f"{result['rps']:.1f}")
    figure("failures", result["failures"])
    figure("p99 first/last window ms", f"{result['p99_first_ms']}/{result['p99_last_ms']}")
    figure("p99 ratio", result["p99_ratio"])
    figure("RSS growth %", result["rss_growth_percent"])
    figure("service CPU cores", result["service_cpu_cores"])

    assert done.returncode == 0, output[-4000:]
    assert "soak verdict: PASSED" in done.stdout
    assert time.monotonic() - started < CI_DURATION + 120
    assert result["failures"] == 0 and result["requests"] > 500
    assert len([w for w in result["windows"] if not w["partial"]]) == CI_DURATION // CI_WINDOW
    assert result["p99_ratio"] <= soak.MAX_P99_RATIO
    assert result["rss_growth_percent"] < soak.MAX_RSS_GROWTH_PERCENT
    assert result["mixed_traffic"], result["traffic"]
    assert result["traffic"]["/predict [clinical]"] > 0 and result["traffic"]["/v2/models/[model]/infer [batch]"] > 0
    assert len(result["samples"]) >= CI_DURATION // 5 and result["sample_errors"] == 0

    # the log is at its normal level: BentoML's access log, on, has a line per request of the run
    log = own_service.log_text()
    logged = sum(
        log.count(f"method=POST,path={path},") for path in ("/predict", "/v2/models/readmission/infer", "/feedback")
    )
    posts = sum(n for name, n in result["traffic"].items() if name != "/v2/models/[model]")
    assert logged >= 0.95 * posts, (logged, posts, log[-2000:])

    # and no patient value the run could have sent is in it (every record of the pool, not only those drawn)
    records = logscan.run_records(folder)
    bare, short = logscan.patient_values(records)
    assert len(records) > 1000 and len(bare) > 50 and {"[70-80)", "InternalMedicine"} <= bare, len(bare)
    hits = logscan.scan(log.splitlines(), bare, short)
    assert hits == [], hits[:5]
    assert result["checks"]["no_patient_values_in_log"]["passed"]
