"""Real servers for tests: start a process on a free loopback port and wait until it is ready; a real Prometheus
with the project's configuration and rules (optionally with shorter windows) and a real Alertmanager with the project's
routing (optionally with shorter timings).

`free_port` and `wait_ready` are loadtest/cli.py's, the one copy the load tests, the benchmark and the OCI check
use too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from loadtest.cli import free_port as free_port  # servers.free_port() in the tests
from loadtest.cli import wait_ready


@dataclass
class Server:
    """A running server process and where it answers."""

    process: subprocess.Popen
    url: str
    log: Path
    grpc: str | None = None  # host:port of its gRPC server, where one was asked for
    metrics: str | None = None  # the URL of its Prometheus /metrics (READMISSION_METRICS_PORT), where it has one

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    @property
    def metrics_target(self) -> str:
        """host:port of its metrics port: its Prometheus target."""
        assert self.metrics is not None, "the server has no metrics port"
        return self.metrics.removeprefix("http://").removesuffix("/metrics")

    def log_text(self) -> str:
        """Everything the server printed."""
        return self.log.read_text(errors="replace")


def start(
    command: Sequence[str], port: int, env: dict[str, str], log: Path, ready_path: str = "/readyz", timeout: float = 90
) -> Server:
    """Start `command` and poll `ready_path` until it answers 200 (or fail with the log)."""
    handle = log.open("wb")
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    metrics_port = int(env.get("READMISSION_METRICS_PORT") or 0)
    metrics = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None
    server = Server(process, f"http://127.0.0.1:{port}", log, metrics=metrics)

    def alive() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}")

    try:
        wait_ready(server.url + ready_path, timeout, alive, every=0.3)
    except RuntimeError as error:  # exited, or not ready in time
        server.stop()
        raise RuntimeError(f"{error}:\n{server.log_text()[-3000:]}") from None
    return server


PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "observability" / "prometheus"


def shortened_rules(folder: Path, durations: Mapping[str, str]) -> list[Path]:
    """Copies of the committed rule files in `folder` with each range `[d]` and each `for: d` whose duration is
    a key of `durations` replaced by its value (e.g. {"1h": "20s", "30m": "5s"}): alerts a test can wait for."""
    written = []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                rule["expr"] = re.sub(r"\[(\w+)\]", lambda m: f"[{durations.get(m[1], m[1])}]", rule["expr"])
                if "for" in rule:
                    rule["for"] = durations.get(rule["for"], rule["for"])
        written.append(folder / path.name)
        written[-1].write_text(yaml.safe_dump(document, sort_keys=False))
    return written


def start_prometheus(
    folder: Path, targets: Mapping[str, list[str]], rule_files: Sequence[Path] = (), alertmanager: str | None = None
) -> Server:
    """observability/prometheus/prometheus.yml with `targets` per job (jobs not given are dropped, the
    `prometheus` job scrapes this one), scraping and evaluating every second, its storage in `folder`;
    `rule_files` instead of the committed rules; alerts sent to the Alertmanager at URL `alertmanager`, or nowhere.
    Skips where Debian's `prometheus` is not installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in rule_files] or [str(PROMETHEUS_DIR / n) for n in config["rule_files"]]
    jobs = {**targets, "prometheus": [f"127.0.0.1:{port}"]}
    assert set(jobs) <= {job["job_name"] for job in config["scrape_configs"]}, "a job the configuration lacks"
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] in jobs]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": jobs[job["job_name"]]}]
    if alertmanager is None:
        del config["alerting"]
    else:
        (sender,) = config["alerting"]["alertmanagers"]
        sender["static_configs"] = [{"targets": [urlsplit(alertmanager).netloc]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    return start(command, port, {}, folder / "prometheus.log", ready_path="/-/ready", timeout=60)


def add_prometheus_targets(server: Server, job: str, targets: list[str]) -> None:
    """Add scrape targets to a job of a Prometheus from `start_prometheus`, which reloads its configuration (SIGHUP):
    the caller waits for them in /api/v1/targets."""
    path = server.log.parent / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    (scrape,) = [scrape for scrape in config["scrape_configs"] if scrape["job_name"] == job]
    scrape["static_configs"][0]["targets"].extend(targets)
    path.write_text(yaml.safe_dump(config))
    server.process.send_signal(signal.SIGHUP)


ALERTMANAGER_CONFIG = PROMETHEUS_DIR.parent / "alertmanager" / "alertmanager.yml"
ROUTE_TIMINGS = ("group_wait", "group_interval", "repeat_interval")


def start_alertmanager(folder: Path, webhook: str, timings: Mapping[str, str]) -> Server:
    """Debian's prometheus-alertmanager on a free loopback port, without clustering, its state in `folder`, running
    observability/alertmanager/alertmanager.yml with every webhook posting to `webhook` (its receiver's path kept:
    /pages, /tickets, /notices) and `timings` (group_wait, group_interval, repeat_interval) on the top route and in
    place of the child routes' own. Skips where it is not installed."""
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.skip("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
    assert set(timings) <= set(ROUTE_TIMINGS), timings
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["route"].update(timings)
    for route in config["route"].get("routes", []):
        route.update({key: value for key, value in timings.items() if key in route})
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook + urlsplit(hook["url"]).path
    (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [binary, f"--config.file={folder / 'alertmanager.yml'}", f"--storage.path={folder / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]  # fmt: skip
    return start(command, port, {}, folder / "alertmanager.log", ready_path="/-/ready", timeout=60)
