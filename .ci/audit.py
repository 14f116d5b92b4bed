"""Dependency audit of the locked requirements: known vulnerabilities in every pin, as a JSON report.

    python .ci/audit.py [--report .readmission/audit.json] [--offline] [FILE ...]

Pins come from uv.lock: every package it locks, the one source of versions (constraints.txt,
bento/requirements.txt, ui/ and loadtest/requirements.txt are exported from it; .ci/lock.py). Requirement
files named on the command line are read instead. What this machine and CI can reach decides the sources
(the report says which ran and why the others did not):

- `pypi-latest`: PyPI's project JSON (`/pypi/NAME/json`). Its `vulnerabilities` are PyPI's own match of the
  OSV / PyPA advisory database against the *latest* release, so they settle a pin that is the latest
  release; an older pin is listed under `unchecked` (PyPI's per-version JSON, which would settle it,
  answers 404 through the registry access here).
- `safety-db`: PyUp's free advisory snapshot, installed from PyPI (package `safety-db`, dev extra). Offline,
  but frozen on 2021-07-01: it catches old vulnerable versions, nothing published since.
- `pip-audit`: run against the pins with `-s osv` when api.osv.dev answers, else with `-s pypi --strict`
  when PyPI's per-version JSON answers; otherwise recorded as "not run: <reason>". (`pip-audit -s pypi`
  without `--strict` reports every pin "not found on PyPI" where that JSON is missing and then prints
  "No known vulnerabilities found" with exit 0: a silent pass, so it is never run that way.)

Exit status: 1 when any source found a known vulnerability, else 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
LOCKED_FILES = ("uv.lock",)
DEFAULT_REPORT = ROOT / ".readmission" / "audit.json"
PYPI = "https://pypi.org/pypi"
OSV_QUERY = "https://api.osv.dev/v1/query"
TIMEOUT_S = 15


@dataclass
class Pin:
    """One package at one exact version, and where it is pinned."""

    name: str
    version: str
    files: list[str] = field(default_factory=list)


@dataclass
class Finding:
    """A known vulnerability in a pin, as one source reports it."""

    name: str
    version: str
    id: str
    source: str
    aliases: list[str]
    fixed_in: list[str]
    summary: str = ""
    link: str = ""


def pins_of_line(line: str) -> tuple[str, str] | None:
    """(canonical name, version) of an exact `name==version` requirement, None for anything else."""
    try:  # a hashed requirement continues on the next lines: `name==version ; marker \`
        requirement = Requirement(line.split("#", 1)[0].strip().removesuffix("\\").strip())
    except InvalidRequirement:  # blank lines, comments, pip options such as -c or --extra-index-url
        return None
    specifiers = list(requirement.specifier)
    if len(specifiers) != 1 or specifiers[0].operator != "==":
        return None
    return canonicalize_name(requirement.name), specifiers[0].version


def read_pins(paths: Iterable[Path]) -> tuple[dict[str, Pin], list[str]]:
    """Every exact pin in the files, and a problem line for each package pinned at two versions."""
    pins: dict[str, Pin] = {}
    problems: list[str] = []
    for path in paths:
        if path.name == "uv.lock":
            packages = tomllib.loads(path.read_text())["package"]
            local = {"editable", "virtual", "directory"}  # the project itself: no release to audit
            lines = [
                f"{p['name']}=={p['version']}" for p in packages if "version" in p and not local & set(p["source"])
            ]
        elif path.suffix == ".toml":
            project = tomllib.loads(path.read_text())["project"]
            lines = [*project.get("dependencies", [])]
            for extra in project.get("optional-dependencies", {}).values():
                lines.extend(extra)
        else:
            lines = path.read_text().splitlines()
        where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        for line in lines:
            pinned = pins_of_line(line)
            if pinned is None:
                continue
            name, version = pinned
            pin = pins.setdefault(name, Pin(name, version))
            if pin.version != version:
                problems.append(f"{name} is pinned at {pin.version} in {pin.files} and at {version} in {where}")
            if where not in pin.files:
                pin.files.append(where)
    return pins, problems


def fetch_json(url: str, data: bytes | None = None) -> dict:
    """GET (or POST `data` to) `url` and decode its JSON answer."""
    request = urllib.request.Request(url, data=data, headers={"accept": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
        return json.load(answer)


def reachable(url: str, data: bytes | None = None) -> str | None:
    """None when `url` answers 2xx, else the reason it does not (for the report)."""
    try:
        fetch_json(url, data)
    except urllib.error.HTTPError as error:
        return f"{url} answered HTTP {error.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return f"{url} is unreachable ({getattr(error, 'reason', error)})"
    except ValueError:
        return f"{url} did not answer JSON"
    return None


def check_pypi_latest(
    pins: dict[str, Pin], fetch: Callable[[str], dict] = fetch_json
) -> tuple[list[Finding], list[dict], list[dict]]:
    """Findings for pins that are their project's latest release; the pins it could not settle; errors."""
    findings: list[Finding] = []
    unchecked: list[dict] = []
    errors: list[dict] = []

    def one(pin: Pin) -> tuple[Pin, dict | None, str | None]:
        try:
            return pin, fetch(f"{PYPI}/{pin.name}/json"), None
        except Exception as error:
            return pin, None, f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, pins.values()))
    for pin, project, error in answers:
        if project is None:
            errors.append({"name": pin.name, "version": pin.version, "error": error})
            continue
        latest = project["info"]["version"]
        if _version(latest) != _version(pin.version):
            unchecked.append({"name": pin.name, "version": pin.version, "latest": latest})
            continue
        for vulnerability in project.get("vulnerabilities") or []:
            if vulnerability.get("withdrawn"):
                continue
            findings.append(
                Finding(
                    pin.name,
                    pin.version,
                    vulnerability["id"],
                    "pypi-latest",
                    list(vulnerability.get("aliases") or []),
                    list(vulnerability.get("fixed_in") or []),
                    (vulnerability.get("summary") or vulnerability.get("details") or "")[:300],
                    vulnerability.get("link") or "",
                )
            )
    return findings, unchecked, errors


def _version(text: str) -> Version | str:
    try:
        return Version(text)
    except InvalidVersion:
        return text


def safety_db() -> tuple[dict, str]:
    """PyUp's advisory snapshot (safety-db) and the date it was taken."""
    spec = importlib.util.find_spec("safety_db")  # found, not imported: its __init__ opens a relative path
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("audit: the safety-db package is not installed (dev extra)")
    data = json.loads((Path(spec.submodule_search_locations[0]) / "insecure_full.json").read_text())
    taken = datetime.fromtimestamp(data["$meta"]["timestamp"], UTC).date().isoformat()
    return data, taken


def check_safety_db(pins: dict[str, Pin], database: dict | None = None) -> list[Finding]:
    """Findings of the offline safety-db snapshot for the pins."""
    database = database if database is not None else safety_db()[0]
    by_name = {canonicalize_name(name): entries for name, entries in database.items() if name != "$meta"}
    findings: list[Finding] = []
    for pin in pins.values():
        try:
            version = Version(pin.version)
        except InvalidVersion:
            continue
        for entry in by_name.get(pin.name, []):
            specs = entry.get("specs") or [entry.get("v", "")]
            if any(_matches(spec, version) for spec in specs):
                cve = entry.get("cve")
                findings.append(
                    Finding(
                        pin.name,
                        pin.version,
                        entry.get("id", "?"),
                        "safety-db",
                        [cve] if cve else [],
                        [],
                        entry.get("advisory", "")[:300],
                    )
                )
    return findings


def _matches(spec: str, version: Version) -> bool:
    try:
        return version in SpecifierSet(spec, prereleases=True)
    except InvalidSpecifier:
        return False


def run_pip_audit(pins: dict[str, Pin], offline: bool) -> tuple[dict, list[Finding]]:
    """pip-audit over the pins with whichever of its services works here; its status and findings."""
    executable = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or shutil.which("pip-audit")
    if executable is None:
        return {"status": "not run: pip-audit is not installed (dev extra)"}, []
    if offline:
        return {"status": "not run: --offline"}, []
    osv_problem = reachable(OSV_QUERY, json.dumps({"package": {"name": "pip", "ecosystem": "PyPI"}}).encode())
    if osv_problem is None:
        service = ["-s", "osv"]
    else:
        probe = next(iter(pins.values()))
        pypi_problem = reachable(f"{PYPI}/{probe.name}/{probe.version}/json")
        if pypi_problem is not None:
            reason = f"no vulnerability service pip-audit knows answers: {osv_problem}; {pypi_problem}"
            return {"status": f"not run: {reason}"}, []
        service = ["-s", "pypi", "--strict"]
    with tempfile.TemporaryDirectory() as folder:
        requirements = Path(folder) / "requirements.txt"
        requirements.write_text("".join(f"{pin.name}=={pin.version}\n" for pin in pins.values()))
        command = [executable, "--no-deps", "--disable-pip", "-r", str(requirements), *service, "-f", "json"]
        command += ["--progress-spinner", "off", "--timeout", str(TIMEOUT_S)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        return {"status": f"failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"}, []
    findings = [
        Finding(
            canonicalize_name(dependency["name"]),
            dependency.get("version", ""),
            vulnerability["id"],
            "pip-audit",
            vulnerability.get("aliases", []),
            vulnerability.get("fix_versions", []),
            (vulnerability.get("description") or "")[:300],
        )
        for dependency in result.get("dependencies", [])
        for vulnerability in dependency.get("vulns", [])
    ]
    skipped = [d for d in result.get("dependencies", []) if d.get("skip_reason")]
    return {"status": f"ran ({' '.join(service)})", "skipped": skipped}, findings


def audit(paths: Iterable[Path], offline: bool = False) -> dict:
    """Audit the pins of `paths` against every source that works here; the report as a dict."""
    pins, problems = read_pins(paths)
    sources: dict[str, dict] = {}
    findings: list[Finding] = []

    database, taken = safety_db()
    found = check_safety_db(pins, database)
    findings += found
    sources["safety-db"] = {"status": "ran", "snapshot": taken, "findings": len(found)}

    if offline:
        sources["pypi-latest"] = {"status": "not run: --offline"}
    else:
        found, unchecked, errors = check_pypi_latest(pins)
        findings += found
        settled = len(pins) - len(unchecked) - len(errors)
        sources["pypi-latest"] = {
            "status": "ran" if len(errors) < len(pins) else f"not run: PyPI unreachable ({errors[0]['error']})",
            "settled": settled,
            "findings": len(found),
            "unchecked": unchecked,
            "errors": errors,
        }

    status, found = run_pip_audit(pins, offline)
    findings += found
    sources["pip-audit"] = status | {"findings": len(found)}

    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": [str(p) for p in paths],
        "pins": len(pins),
        "inconsistent_pins": problems,
        "sources": sources,
        "vulnerable": sorted({f"{f.name}=={f.version}" for f in findings}),
        "findings": [vars(f) for f in findings],
    }


def main(argv: list[str] | None = None) -> int:
    """Write the report; print a summary; exit 1 on any known vulnerability or inconsistent pin."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("files", nargs="*", type=Path, help="requirement files (default: the locked ones)")
    options.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="where to write the JSON report")
    options.add_argument("--offline", action="store_true", help="only the sources that need no network")
    args = options.parse_args(argv)
    paths = [p.resolve() for p in args.files] or [ROOT / name for name in LOCKED_FILES]
    report = audit(paths, offline=args.offline)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n")
    for name, source in report["sources"].items():
        extra = (
            f", {source['settled']} pins settled, {len(source['unchecked'])} not latest" if "settled" in source else ""
        )
        print(f"audit: {name}: {source['status']}{extra}")
    for finding in report["findings"]:
        pin, aliases = f"{finding['name']}=={finding['version']}", ", ".join(finding["aliases"])
        print(f"audit: VULNERABLE {pin}: {finding['id']} ({aliases}) [{finding['source']}]")
    for problem in report["inconsistent_pins"]:
        print(f"audit: INCONSISTENT {problem}")
    print(f"audit: {report['pins']} pins, {len(report['vulnerable'])} vulnerable; report in {args.report}")
    return 1 if report["findings"] or report["inconsistent_pins"] else 0


if __name__ == "__main__":
    sys.exit(main())
