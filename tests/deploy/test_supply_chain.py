"""Supply chain: no secrets in tracked files, one source of versions (uv.lock, .ci/lock.py), no known-vulnerable
pins (the audit of .ci/audit.py)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / ".readmission" / "audit.json"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"ci_{name}", REPO / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


audit = _load("audit")
lock = _load("lock")


def tracked_files() -> list[Path]:
    """Every file git tracks in the work tree (deleted-but-tracked ones left out)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    paths = [REPO / name for name in listed.decode().split("\0") if name]
    return [path for path in paths if path.is_file()]


def scan(paths: list[Path]) -> dict[str, list[dict]]:
    """detect-secrets with its default plugins and filters (inline `pragma: allowlist secret` honoured)."""
    secrets = SecretsCollection(root=str(REPO))
    with default_settings():
        for path in paths:
            secrets.scan_file(str(path))
    return secrets.json()


# --- secrets -------------------------------------------------------------------------------------------------


def test_no_secrets_in_tracked_files():
    files = tracked_files()
    assert len(files) > 50
    found = scan(files)
    listing = [f"{name}:{hit['line_number']} {hit['type']}" for name, hits in found.items() for hit in hits]
    assert not listing, f"possible secrets (a line that holds none: mark it `# pragma: allowlist secret`): {listing}"


def test_scanner_finds_planted_secrets(tmp_path):
    # assembled at run time, so this file itself holds no secret-shaped string
    aws_key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    aws_secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"  # pragma: allowlist secret
    begin, end = "-----BEGIN " + "RSA PRIVATE KEY-----", "-----END " + "RSA PRIVATE KEY-----"
    planted = tmp_path / "settings.py"
    planted.write_text(
        f'AWS_ACCESS_KEY_ID = "{aws_key}"\n'
        f'aws_secret_access_key = "{aws_secret}"\n'
        f'KEY = """{begin}\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n{end}"""\n'
    )
    found = {hit["type"] for hits in scan([planted]).values() for hit in hits}
    assert {"AWS Access Key", "Private Key"} <= found


def test_allowlist_pragma_hides_only_its_own_line(tmp_path):
    digest = "0689e7ec031237dc63031b938805c48377748761a3b26acab621567afa24df97"  # pragma: allowlist secret
    other = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # pragma: allowlist secret
    planted = tmp_path / "hashes.py"
    planted.write_text(f'A = "{digest}"  # pragma: allowlist secret\nB = "{other}"\n')
    lines = [hit["line_number"] for hits in scan([planted]).values() for hit in hits]
    assert lines == [2]


def _manifests(path: Path) -> list[dict]:
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
    except yaml.YAMLError:
        return []


def test_no_kubernetes_secret_with_data_is_tracked():
    offending = []
    for path in tracked_files():
        if path.suffix not in (".yaml", ".yml"):
            continue
        name = str(path.relative_to(REPO))
        docs = _manifests(path)
        offending += [
            name for doc in docs if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData"))
        ]
        # kustomize would generate one from literals or files kept beside the manifests
        offending += [
            f"{name} (secretGenerator)"
            for doc in docs
            for generator in doc.get("secretGenerator") or []
            if generator.get("literals") or generator.get("files") or generator.get("envs")
        ]
        if not docs and "kind: Secret" in path.read_text():  # not parseable as YAML (a template): be strict
            offending.append(f"{name} (unparsed)")
    assert not offending, "Secrets are created at deploy time (kserve/deploy.sh), never committed"


def test_secret_check_catches_a_committed_secret(tmp_path):
    manifest = tmp_path / "secret.yaml"
    manifest.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {token: abc}\n")
    assert [d["kind"] for d in _manifests(manifest)] == ["Secret"]
    assert _manifests(manifest)[0]["stringData"]


# --- dependency audit ----------------------------------------------------------------------------------------


@pytest.mark.package_index
def test_locked_pins_have_no_known_vulnerabilities(figure):
    status = audit.main(["--report", str(REPORT)])
    report = json.loads(REPORT.read_text())
    assert not report["inconsistent_pins"]
    assert not report["findings"], "known vulnerabilities: update these pins (`make lock UPGRADE=name==version`)"
    assert status == 0
    assert report["pins"] > 150
    sources = report["sources"]
    assert sources["safety-db"]["status"] == "ran"
    assert sources["pypi-latest"]["status"] == "ran", "PyPI's project JSON is CI's advisory source: unreachable?"
    assert not sources["pypi-latest"]["errors"]
    # pip-audit runs where a service of its own answers, otherwise the report says why not
    assert sources["pip-audit"]["status"].startswith(("ran", "not run: "))
    figure("pins audited", report["pins"])
    figure("pins settled by PyPI's advisory data (latest release)", sources["pypi-latest"]["settled"])
    figure("pins behind their latest release (not settled)", len(sources["pypi-latest"]["unchecked"]))
    figure("pip-audit", sources["pip-audit"]["status"][:80])


def test_audit_flags_deliberately_old_pins(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("requests==2.19.0\njinja2==2.10\nnumpy==2.4.6\n")
    report_path = tmp_path / "audit.json"
    assert audit.main([str(requirements), "--offline", "--report", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert report["vulnerable"] == ["jinja2==2.10", "requests==2.19.0"]
    aliases = {alias for finding in report["findings"] for alias in finding["aliases"]}
    assert {"CVE-2018-18074", "CVE-2020-28493"} <= aliases


def test_pypi_latest_source_settles_only_latest_releases():
    pins = {
        "a": audit.Pin("a", "1.0"),
        "b": audit.Pin("b", "1.0"),
        "c": audit.Pin("c", "2.0"),
    }
    vulnerability = {"id": "PYSEC-0", "aliases": ["CVE-0"], "fixed_in": [], "summary": "s", "withdrawn": None}
    projects = {
        "a": {"info": {"version": "1.0"}, "vulnerabilities": [vulnerability]},
        "b": {"info": {"version": "1.1"}, "vulnerabilities": []},
        "c": {"info": {"version": "2.0"}, "vulnerabilities": [vulnerability | {"withdrawn": "2024-01-01"}]},
    }
    findings, unchecked, errors = audit.check_pypi_latest(pins, lambda url: projects[url.split("/")[-2]])
    assert [(f.name, f.id) for f in findings] == [("a", "PYSEC-0")]
    assert unchecked == [{"name": "b", "version": "1.0", "latest": "1.1"}]
    assert errors == []


@pytest.mark.package_index
def test_pypi_latest_source_flags_a_live_advisory():
    # ecdsa's maintainers do not fix the Minerva timing attack (CVE-2024-23342): its latest release stays affected
    try:
        latest = audit.fetch_json(f"{audit.PYPI}/ecdsa/json")["info"]["version"]
    except OSError as error:
        pytest.fail(f"PyPI's project JSON is unreachable: {error}")
    findings, unchecked, _ = audit.check_pypi_latest({"ecdsa": audit.Pin("ecdsa", latest)})
    if not findings and not unchecked:
        pytest.skip(f"ecdsa {latest} has no advisory any more: choose another live example")
    assert any("CVE-2024-23342" in f.aliases for f in findings)


def test_audit_reads_every_pin_of_the_lock():
    assert audit.LOCKED_FILES == ("uv.lock",)
    pins, problems = audit.read_pins([REPO / "uv.lock"])
    assert not problems
    assert {name: pin.version for name, pin in pins.items()} == lock.locked_versions()
    assert "readmission" not in pins  # the project itself is no release
    assert pins["bentoml"].files == ["uv.lock"]
    assert pins["detect-secrets"].version and pins["pip-audit"].version
    # the hashed exports read the same (a pin's hashes continue on the lines after it)
    exported, problems = audit.read_pins([REPO / "constraints.txt"])
    assert not problems
    assert {name: pin.version for name, pin in exported.items()} == {name: pin.version for name, pin in pins.items()}


# --- one source of versions ----------------------------------------------------------------------------------


def test_lock_satisfies_pyproject_and_every_export_is_current():
    assert lock.check() == []


def test_exports_pin_locked_versions_with_hashes():
    # the same agreement as above without uv: every requirement of every export is a locked version, hashed
    locked = lock.locked_versions()
    for name in lock.EXPORTS:
        text = (REPO / name).read_text()
        requirements = [r for r in text.replace("\\\n", " ").splitlines() if r[:1].isalnum()]
        assert requirements, name
        for requirement in requirements:
            package, version = audit.pins_of_line(requirement.split("--hash")[0]) or (requirement, None)
            assert locked.get(package) == version, f"{name}: {requirement[:80]}"
            assert "--hash=sha256:" in requirement, f"{name}: {package} has no hash"
    serve = {line.split("==")[0] for line in (REPO / "bento/requirements.txt").read_text().splitlines()}
    assert "xgboost-cpu" in serve and not serve & {"mlflow", "pandas", "scikit-learn", "kserve", "streamlit"}


def _project_copy(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "README.md", "uv.lock", *lock.EXPORTS):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((REPO / name).read_text())
    return tmp_path


@pytest.mark.parametrize("name", list(lock.EXPORTS))
@pytest.mark.parametrize("edit", ["version", "hash"])
def test_lock_check_catches_an_export_edited_by_hand(tmp_path, name, edit):
    root = _project_copy(tmp_path)
    path = root / name
    text = path.read_text()
    if edit == "version":
        assert "\nnumpy==2." in text  # the one dependency every export holds
        changed = text.replace("\nnumpy==2.", "\nnumpy==1.", 1)
    else:
        start = text.index("--hash=sha256:") + len("--hash=sha256:")
        changed = text[:start] + ("0" if text[start] != "0" else "1") + text[start + 1 :]
    path.write_text(changed)
    assert lock.check(root) == [f"{name} is not uv.lock's export (edited by hand? run `make lock`)"]


def test_lock_check_catches_an_exact_pin_in_pyproject(tmp_path):
    root = _project_copy(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"bentoml>=', '"bentoml==', 1))
    problems = lock.check(root)
    assert problems[0].startswith("pyproject.toml pins 'bentoml==")
    assert problems[1:] == [p for p in problems if p.startswith("uv.lock does not satisfy")]  # it records the specifier


def test_lock_check_catches_a_lock_behind_pyproject(tmp_path):
    root = _project_copy(tmp_path)
    pyproject = root / "pyproject.toml"
    locked = lock.locked_versions()["orjson"]
    pyproject.write_text(pyproject.read_text().replace(f'"orjson>={locked}"', '"orjson>=999"', 1))
    problems = lock.check(root)
    assert len(problems) == 1 and problems[0].startswith("uv.lock does not satisfy pyproject.toml")
