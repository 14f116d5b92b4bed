"""Play kserve/'s pods with podman (oci/kube_play.py), check them, take the predictor down under load: a JSON report.

Run by `oci/kube_play.sh check` (which sets up the container store and the images) as `python -m oci.check_pods`.
Measured, per container: the user and the processes' users, whether a write to the root filesystem fails, the
capabilities, no_new_privs and seccomp of its first process, the limits and restart policy podman set, its readiness
probe as the kubelet runs it and its liveness probe as podman runs it (`podman healthcheck run`: no systemd here to
schedule it). Then a /predict with the API token from the Secret (and one without), found in PostgreSQL through the
Secret's URL; then the predictor taken down (oci/kube_play.py's `down`: SIGTERM, its grace period, `podman kube
down`) while a client keeps sending predictions, and which of the answered prediction ids PostgreSQL holds once the
pod is gone. Both pods and the data volume are removed at the end.
The report holds no secret value; the verdicts are the test's (tests/deploy/test_kube_play.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bento import features
from bento.core.ids import run
from loadtest import cli
from oci import kube_play
from oci.kube_play import Played, podman

STATUS_FIELDS = ("CapEff", "NoNewPrivs", "Seccomp")  # of /proc/1/status
ROOT_PROBE = "/written-by-check-pods"  # a file the read-only root filesystem must refuse
WARM_ANSWERS = 20  # answers before the predictor is taken down


def container_report(played: Played, role: str) -> dict[str, Any]:
    """What podman set up for a role's container and what it does."""
    name, spec = played.container(role)
    inspect = json.loads(podman("inspect", name).stdout)[0]
    host = inspect["HostConfig"]
    status = podman("exec", name, "cat", "/proc/1/status").stdout.splitlines()
    write = subprocess.run(["podman", "exec", name, "touch", ROOT_PROBE], capture_output=True, text=True, timeout=30)
    top = podman("top", name, "huser").stdout.split()[1:]
    health = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True, text=True, timeout=60)
    return {
        "name": name,
        "image": inspect["ImageName"],
        "config_user": inspect["Config"]["User"],
        "uid": int(podman("exec", name, "id", "-u").stdout),
        "gid": int(podman("exec", name, "id", "-g").stdout),
        "process_uids": sorted({int(uid) for uid in top}),
        "read_only_rootfs": host["ReadonlyRootfs"],
        "root_write_refused": write.returncode != 0 and "Read-only file system" in write.stderr,
        "proc_status": {
            key.rstrip(":"): value
            for key, value in (
                line.split(maxsplit=1) for line in status if line.split()[0].rstrip(":") in STATUS_FIELDS
            )
        },
        "memory_limit_bytes": host["Memory"],
        "memory_reservation_bytes": host["MemoryReservation"],
        "cpu_limit_cores": host["CpuQuota"] / host["CpuPeriod"] if host["CpuPeriod"] else 0,
        "restart_policy": host["RestartPolicy"]["Name"],
        "env_names": sorted(item.split("=", 1)[0] for item in inspect["Config"]["Env"]),
        "mounts": {mount["Destination"]: mount["Type"] for mount in inspect["Mounts"]},
        "readiness_passes": kube_play.probe(name, spec, played.addresses[role], spec["readinessProbe"]),
        "healthcheck": inspect["Config"].get("Healthcheck", {}).get("Test"),
        "liveness_healthy": health.returncode == 0,
        "liveness_output": (health.stdout + health.stderr).strip()[-500:],
    }


def logged_ids(played: Played, ids: list[str]) -> set[str]:
    """Which of `ids` the prediction log in PostgreSQL holds, read through the Secret's URL.

    The URL names the Service (cluster DNS); libpq's hostaddr connects to the pod it stands for.
    """
    url = played.secrets["readmission-prediction-log"]["url"]
    with psycopg.connect(url, hostaddr=played.addresses["postgres"], connect_timeout=5) as db:
        rows = db.execute("SELECT first_id, rows FROM prediction_batches WHERE first_id <= %s", (max(ids),)).fetchall()
    return set(ids) & {prediction_id for first_id, count in rows for prediction_id in run(first_id, count)}


class Traffic(threading.Thread):
    """Sends /predict in a loop until stopped, keeping the (time, prediction id) of every 200 answer."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.answered: list[tuple[float, str]] = []
        self.failures: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        """Send until `stop` is set."""
        headers = {"authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(30, connect=2)) as client:
            while not self.stop.is_set():
                try:
                    answer = client.post("/predict", json=features.EXAMPLE_PATIENT)
                except httpx.HTTPError as error:  # the server closed or refused: retried a moment later
                    self.failures[type(error).__name__] = self.failures.get(type(error).__name__, 0) + 1
                    self.stop.wait(0.05)
                    continue
                if answer.status_code == 200:
                    self.answered.append((time.monotonic(), answer.json()["prediction_id"]))
                else:
                    self.failures[str(answer.status_code)] = self.failures.get(str(answer.status_code), 0) + 1


def drain_report(played: Played, url: str, token: str) -> dict[str, Any]:
    """`podman kube down` of the predictor while predictions keep coming; which answered ones PostgreSQL holds."""
    traffic = Traffic(url, token)
    traffic.start()
    cli.wait_until(lambda: len(traffic.answered) >= WARM_ANSWERS, 60)
    began = time.monotonic()
    exit_codes = kube_play.down(played.folder, "predictor")
    down_seconds = time.monotonic() - began
    traffic.stop.set()
    traffic.join(60)
    ids = [prediction_id for _, prediction_id in traffic.answered]
    missing = sorted(set(ids) - logged_ids(played, ids))
    return {
        "answered": len(ids),
        "answered_after_down_began": sum(moment > began for moment, _ in traffic.answered),
        "failures": traffic.failures,
        "down_seconds": round(down_seconds, 1),
        "exit_codes": exit_codes,
        "missing": missing,
    }


def check(folder: Path, images: dict[str, str], timeout: float) -> dict[str, Any]:
    """Everything measured (`up` to the last `down`); both pods are removed even when a check fails."""
    started = time.monotonic()
    try:
        played = kube_play.up(folder, images, timeout)
        report: dict[str, Any] = {"up_seconds": round(time.monotonic() - started, 1), "images": images}
        report["pods"] = played.pods
        report["containers"] = {role: container_report(played, role) for role in kube_play.ROLES}
        url = f"http://{played.addresses['predictor']}:3000"
        token = played.secrets["readmission-api-token"]["token"]
        with httpx.Client(base_url=url, timeout=30) as client:
            report["unauthorized_status"] = client.post("/predict", json=features.EXAMPLE_PATIENT).status_code
            answer = client.post(
                "/predict", json=features.EXAMPLE_PATIENT, headers={"authorization": f"Bearer {token}"}
            )
        report["predict_status"] = answer.status_code
        prediction_id = answer.json()["prediction_id"]
        report["log_seconds"] = round(
            cli.wait_until(lambda: prediction_id in logged_ids(played, [prediction_id]), 30), 2
        )
        report["drain"] = drain_report(played, url, token)
    finally:
        for role in reversed(kube_play.ROLES):
            kube_play.down(folder, role, volumes=True)
    return report


def main() -> None:
    """Check the pods and write the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", type=Path, required=True, help="where the kube YAML and the test values go")
    parser.add_argument("--image", action="append", default=[], metavar="CONTAINER=IMAGE")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each pod's readiness")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    report = check(args.folder, dict(item.split("=", 1) for item in args.image), args.timeout)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    drain = report["drain"]
    print(
        f"pods up in {report['up_seconds']} s; kube down under load in {drain['down_seconds']} s: "
        f"{drain['answered']} answered ({drain['answered_after_down_began']} after it began), "
        f"{len(drain['missing'])} not in PostgreSQL"
    )


if __name__ == "__main__":
    main()
