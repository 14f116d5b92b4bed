"""The one source of versions: uv.lock, and the requirement files exported from it.

    python .ci/lock.py                          # re-lock (keeping every locked version) and rewrite the exports
    python .ci/lock.py --upgrade NAME[==VER]    # the same, moving NAME (to VER, else to its latest release)
    python .ci/lock.py --check                  # exit 1 when the lock or an export disagrees (offline)

pyproject.toml declares the dependencies (with floors, never exact pins); `uv lock` resolves them into
uv.lock, which holds every version and the sha256 of every file. The files below are exports of it, with
hashes, and nobody edits them: `--check` (tests/deploy/test_supply_chain.py) fails on a pin edited by hand in any
of them, on a lock that no longer satisfies pyproject.toml, and on an exact pin in pyproject.toml.

uv (a dev dependency, pinned by the lock itself) does the locking and exporting: it writes a hashed,
cross-checked lock from pyproject.toml in a second and exports any extra's closure from it. pip-tools
would need one compiled file per extra, each resolved on its own, so they could drift apart.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCK = "uv.lock"
# export -> (what installs it, `uv export` options choosing the extras)
EXPORTS = {
    "constraints.txt": ("`make venv` (pip --require-hashes), every extra", ["--all-extras"]),
    "bento/requirements.txt": ("the Bento image (bentofile.yaml), the serve extra only", ["--extra", "serve"]),
    "ui/requirements.txt": ("ui/Dockerfile, the ui extra only", ["--extra", "ui"]),
    "loadtest/requirements.txt": ("loadtest/Dockerfile, the loadtest extra only", ["--extra", "loadtest"]),
}
HEADER = (
    "# Exported from uv.lock by `make lock` (.ci/lock.py): do not edit; tests/deploy/test_supply_chain.py checks it.\n"
    "# Installed by {who}. To change a version: `make lock UPGRADE=name==version`.\n"
)


def uv() -> str:
    """The uv beside this interpreter (the dev extra installs it), else one on PATH."""
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise SystemExit("lock: uv is not installed (dev extra: `make venv`)")
    return found


def _uv(args: list[str], root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([uv(), *args], cwd=root, capture_output=True, text=True, timeout=600)


def export(name: str, root: Path = ROOT) -> str:
    """The text `name` must hold: uv.lock's closure of its extras, pinned and hashed (no lock update)."""
    who, options = EXPORTS[name]
    command = ["export", "--frozen", "--no-header", "--no-emit-project", "--format", "requirements-txt", *options]
    done = _uv(command, root)
    if done.returncode != 0:
        raise SystemExit(f"lock: uv export failed: {done.stderr.strip()}")
    return HEADER.format(who=who) + done.stdout


def locked_versions(root: Path = ROOT) -> dict[str, str]:
    """Every package uv.lock pins (its name as the lock spells it, canonical) and its version; not the project."""
    lock = tomllib.loads((root / LOCK).read_text())
    return {
        package["name"]: package["version"]
        for package in lock["package"]
        if "version" in package and not {"editable", "virtual"} & set(package.get("source", {}))
    }


def exact_pins_in_pyproject(root: Path = ROOT) -> list[str]:
    """Requirements of pyproject.toml pinned with == or ===: a second place deciding a version."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = [*project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        declared.extend(extra)
    return [text for text in declared if any(s.operator in ("==", "===") for s in Requirement(text).specifier)]


def check(root: Path = ROOT) -> list[str]:
    """Why the lock or an export is not current (empty when all agree). Offline: reads only the lock."""
    problems = [
        f"pyproject.toml pins {text!r} exactly: declare a floor (>=) and let uv.lock decide the version"
        for text in exact_pins_in_pyproject(root)
    ]
    done = _uv(["lock", "--check", "--offline"], root)
    if done.returncode != 0:
        problems.append(f"uv.lock does not satisfy pyproject.toml (run `make lock`): {done.stderr.strip()[-400:]}")
        return problems
    for name in EXPORTS:
        path = root / name
        if not path.is_file() or path.read_text() != export(name, root):
            problems.append(f"{name} is not uv.lock's export (edited by hand? run `make lock`)")
    return problems


def write(root: Path = ROOT, upgrade: list[str] = ()) -> None:
    """Re-lock (only `upgrade` moves; every other locked version stays) and rewrite every export."""
    command = ["lock"]
    for package in upgrade:
        command += ["--upgrade-package", package]
    done = _uv(command, root)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    for name in EXPORTS:
        (root / name).write_text(export(name, root))
        print(f"lock: wrote {name}")


def main(argv: list[str] | None = None) -> int:
    """Write the lock and its exports, or (--check) report what disagrees."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--check", action="store_true", help="change nothing; exit 1 when anything disagrees")
    options.add_argument("--upgrade", action="append", default=[], metavar="NAME[==VERSION]")
    args = options.parse_args(argv)
    if not args.check:
        write(ROOT, args.upgrade)
    problems = check(ROOT)
    for problem in problems:
        print(f"lock: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
