"""Run kserve/'s pods with `podman kube play`: PostgreSQL's, then the predictor's, each ready as the kubelet sees it.

Run by oci/kube_play.sh (oci/env.sh's container store, the images) as `python -m oci.kube_play up|down`, or used by
oci/check_pods.py. `up` renders the pods (oci/kube_pods.py) into a folder, creates the Secrets they read as podman
secrets for as long as it plays them (test values: a random password and API token, kept in the folder's
secrets.json, mode 600, and reused while the data volume lives), plays PostgreSQL's pod with its
PersistentVolumeClaim, waits for its readiness probe, then plays the predictor's pod with the Service name of
PostgreSQL resolved to that pod's address, and waits for its readiness probe; as deploy.sh waits for the StatefulSet
before applying the InferenceService.
Two things podman 4.3 does not do are done here: readiness probes (it ignores them) are run as the kubelet runs them
(`probe`), and `down` stops a pod as the kubelet does, its containers first (SIGTERM, then SIGKILL after its
terminationGracePeriodSeconds) and its infra container (the pod's network) last, before `podman kube down` removes it:
4.3's `kube down` alone stops every container of the pod, infra included, with a timeout of 0, a SIGKILL at once.
Each pod has its own network namespace on podman's default kube network, so the manifests' ports are used as they are.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest import cli
from oci import kube_pods

Doc = kube_pods.Doc
ROLES = ("postgres", "predictor")  # the order of `up`; `down` goes the other way
SECRET_VALUES = "secrets.json"  # pragma: allowlist secret (the file's name, not a secret)
SCRATCH = "empty-dirs"  # the folder of the pods' emptyDir folders


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run podman; raise with its output when it fails."""
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


@dataclass
class Played:
    """What `up` started: each role's pod as played, its address, and the Secrets' values."""

    folder: Path
    pods: dict[str, Doc]
    addresses: dict[str, str]
    secrets: dict[str, dict[str, str]]

    def container(self, role: str) -> tuple[str, Doc]:
        """The podman name (`<pod>-<container>`) and the spec of a role's container (each pod here has one)."""
        pod = self.pods[role]
        (spec,) = pod["spec"]["containers"]
        return f"{pod['metadata']['name']}-{spec['name']}", spec


def kube_file(folder: Path, role: str) -> Path:
    """The kube YAML a role's pod is played from (and `podman kube down` is given)."""
    return folder / f"{role}.yaml"


def play(folder: Path, role: str, docs: list[Doc], pod: Doc, images: dict[str, str], hosts: dict[str, str]) -> Doc:
    """`podman kube play` a pod (after the resources in `docs`) as `kube_pods.for_podman` adapts it; the pod played.

    Its emptyDir folders are made first, empty and writable by every user, as the kubelet makes an emptyDir.
    """
    for path in kube_pods.scratch_folders(pod, folder / SCRATCH).values():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        path.chmod(0o777)
    played = kube_pods.for_podman(pod, images, folder / SCRATCH, hosts)
    kube_file(folder, role).write_text(kube_pods.kube_yaml([*docs, played]))
    podman("kube", "play", "--replace", str(kube_file(folder, role)))
    return played


def pod_address(pod: Doc) -> str:
    """The IP address of a played pod (its infra container's, on podman's kube network)."""
    infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod["metadata"]["name"]).stdout.strip()
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    address = podman("inspect", "--format", template, infra).stdout.strip()
    if not address:
        raise RuntimeError(f"pod {pod['metadata']['name']} has no IP address")
    return address


def probe_port(port: int | str, container: Doc) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container.get("ports", []) if p.get("name") == port)


def probe(name: str, container: Doc, address: str, spec: dict[str, Any]) -> bool:
    """Whether a probe passes, run as the kubelet runs it: exec inside the container, HTTP and TCP from outside."""
    timeout = spec.get("timeoutSeconds", 1)
    try:
        if "exec" in spec:
            done = subprocess.run(["podman", "exec", name, *spec["exec"]["command"]], capture_output=True,
                                  timeout=timeout + 5)  # fmt: skip
            return done.returncode == 0
        if "httpGet" in spec:
            get = spec["httpGet"]
            port = probe_port(get["port"], container)
            url = f"{get.get('scheme', 'HTTP').lower()}://{address}:{port}{get.get('path', '/')}"
            return 200 <= httpx.get(url, timeout=timeout).status_code < 400
        if "tcpSocket" in spec:
            with socket.create_connection((address, probe_port(spec["tcpSocket"]["port"], container)), timeout):
                return True
    except (OSError, httpx.HTTPError, subprocess.TimeoutExpired):
        return False
    raise ValueError(f"a probe this module cannot run: {sorted(spec)}")


def container_state(name: str) -> str:
    """A container's state (running, exited, ...)."""
    return podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def logs(name: str) -> str:
    """The end of what a container printed."""
    done = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=30)
    return (done.stdout + done.stderr)[-4000:]


def wait_ready(played: Played, role: str, timeout: float) -> float:
    """Seconds until every readiness probe of a role's pod passes; fail at once, with its logs, if a container stops."""
    pod, address = played.pods[role], played.addresses[role]
    containers = {f"{pod['metadata']['name']}-{c['name']}": c for c in pod["spec"]["containers"]}

    def ready() -> bool:
        return all(
            probe(name, c, address, c["readinessProbe"]) for name, c in containers.items() if "readinessProbe" in c
        )

    def alive() -> None:
        for name in containers:
            if (state := container_state(name)) != "running":
                raise RuntimeError(f"{name} is {state}:\n{logs(name)}")

    try:
        return cli.wait_until(ready, timeout, alive, every=0.5)
    except TimeoutError:
        raise RuntimeError(f"{role} not ready within {timeout:g} s:\n{logs(next(iter(containers)))}") from None


def secret_values(folder: Path) -> dict[str, str]:
    """The test values of the Secrets' keys: the folder's (while its data volume lives), else new random ones."""
    path = folder / SECRET_VALUES
    if path.is_file():
        return json.loads(path.read_text())
    values = {"password": secrets.token_hex(24), "token": secrets.token_hex(32)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(values))
    return values


def create_secrets(folder: Path, values: dict[str, dict[str, str]]) -> None:
    """Each Secret as a podman secret of the same name (replacing one left by an earlier run).

    podman resolves a `secretKeyRef` when it creates the container: `up` removes them once both pods are played.
    """
    for name, data in values.items():
        subprocess.run(["podman", "secret", "rm", name], capture_output=True, timeout=30)
        path = folder / f"secret-{name}.json"
        path.touch(mode=0o600)
        path.write_text(kube_pods.podman_secret(data))
        podman("secret", "create", name, str(path))
        path.unlink()


def up(folder: Path, images: dict[str, str], timeout: float) -> Played:
    """Render and play both pods, PostgreSQL's first, each ready before the next; what was played."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    postgres_docs = kube_pods.kustomize(kube_pods.POSTGRES_FOLDER)
    isvc = kube_pods.find(kube_pods.kustomize(kube_pods.PREDICTOR_OVERLAY), "InferenceService")
    pods = {"postgres": kube_pods.statefulset_pod(kube_pods.find(postgres_docs, "StatefulSet")),
            "predictor": kube_pods.predictor_pod(isvc)}  # fmt: skip
    values = secret_values(folder)
    values["url"] = kube_pods.prediction_log_url(postgres_docs, values["password"])
    played = Played(folder, {}, {}, kube_pods.secrets(list(pods.values()), values))
    create_secrets(folder, played.secrets)
    claim = kube_pods.find(postgres_docs, "PersistentVolumeClaim")
    kept = subprocess.run(["podman", "volume", "exists", claim["metadata"]["name"]], timeout=30).returncode == 0
    service = kube_pods.service_host(kube_pods.find(postgres_docs, "Service"))
    try:
        for role in ROLES:
            docs = [] if role != "postgres" or kept else [claim]  # podman refuses a claim whose volume exists
            hosts = {service: played.addresses["postgres"]} if role == "predictor" else {}
            played.pods[role] = play(folder, role, docs, pods[role], images, hosts)
            played.addresses[role] = pod_address(played.pods[role])
            wait_ready(played, role, timeout)
    finally:  # read when a container is created: not kept in podman's store
        subprocess.run(["podman", "secret", "rm", *played.secrets], capture_output=True, timeout=30)
    return played


def down(folder: Path, role: str, volumes: bool = False) -> dict[str, int]:
    """Stop a role's pod as the kubelet would, then remove it with `podman kube down`; its containers' exit codes.

    Its containers get SIGTERM, then SIGKILL after the pod's terminationGracePeriodSeconds, and only then is its
    infra container stopped: `podman pod stop` stops that at once too, and the pod's network goes with it, so a
    draining server can neither answer nor reach its database. Then its emptyDir folders go, and with `volumes` its
    claims' volumes.
    """
    path = kube_file(folder, role)
    if not path.is_file():
        return {}
    pod = next(doc for doc in yaml.safe_load_all(path.read_text()) if doc["kind"] == "Pod")
    name, grace = pod["metadata"]["name"], int(pod["spec"].get("terminationGracePeriodSeconds", 30))
    containers = [f"{name}-{c['name']}" for c in pod["spec"]["containers"]]
    podman("stop", "--time", str(grace), *containers, timeout=grace + 60)
    codes = {c: int(podman("inspect", "--format", "{{.State.ExitCode}}", c).stdout) for c in containers}
    podman("kube", "down", str(path), timeout=120)
    shutil.rmtree(folder / SCRATCH / name, ignore_errors=True)
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in pod["spec"].get("volumes", []) if "persistentVolumeClaim" in v
    ]
    if volumes and claims:
        podman("volume", "rm", "--force", *claims)
        (folder / SECRET_VALUES).unlink(missing_ok=True)  # a new volume gets a new password
    path.unlink()
    return codes


def main() -> None:
    """`up`: play both pods and print their addresses; `down`: remove them (the predictor first)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--folder", type=Path, required=True, help="where the kube YAML and the test values go")
    parser.add_argument("--image", action="append", default=[], metavar="CONTAINER=IMAGE",
                        help="the local image of a container, by its name in the manifests")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each pod's readiness")
    parser.add_argument("--volumes", action="store_true", help="down: also remove the data volume")
    args = parser.parse_args()
    if args.command == "down":
        for role in reversed(ROLES):
            down(args.folder, role, args.volumes)
        return
    played = up(args.folder, dict(item.split("=", 1) for item in args.image), args.timeout)
    for role in ROLES:
        print(f"{played.pods[role]['metadata']['name']}: ready at {played.addresses[role]}")
    print(f"API token and PostgreSQL password: {args.folder / SECRET_VALUES}")


if __name__ == "__main__":
    main()
