"""A real PostgreSQL server for tests: Debian's `postgresql` package, a throwaway cluster on a free loopback port.

The server refuses to run as root, so as root its folder belongs to the `postgres` user and every command runs
through `runuser`. Tests may stop and start it (a database going away under load); `database` gives each test
an empty database of its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests import servers

INSTALLED = Path("/usr/lib/postgresql")
USER = "postgres"


def binaries() -> Path | None:
    """The bin folder of the newest installed PostgreSQL, or None."""
    found = sorted(INSTALLED.glob("*/bin/pg_ctl"), key=lambda path: int(path.parent.parent.name))
    return found[-1].parent if found else None


def missing() -> str | None:
    """Why no test server can be started here (None when one can)."""
    if binaries() is None:
        return f"PostgreSQL is not installed (no {INSTALLED}/*/bin/pg_ctl; apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return f"running as root and there is no `{USER}` user to run PostgreSQL as"
    return None


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster: trust authentication, loopback TCP and a socket in its own folder."""

    bin: Path
    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, str(self.bin / tool), *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: open connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def database(self) -> str:
        """The URL of a new, empty database."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> PostgresServer:
    """A new cluster in a folder of its own under the system's temp folder (pytest's are private to root)."""
    bin_folder = binaries()
    assert bin_folder is not None
    folder = Path(tempfile.mkdtemp(prefix="readmission-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, USER, USER)
    server = PostgresServer(bin_folder, folder, servers.free_port())
    try:
        server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", USER, "--no-sync")
        server.start()
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server
