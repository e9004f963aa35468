"""A throwaway PostgreSQL server for the tests: its own cluster in a temp dir, on a free port of
127.0.0.1, started with the server binaries Debian installs (`/usr/lib/postgresql/*/bin`).

As root, initdb and postgres refuse to run, so they run as the `postgres` user the Debian
package creates. Where no server can run, the tests that need one skip and say why, except
with `CI=true`, where they fail.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_USER = "postgres"
_databases = itertools.count(1)


def server_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def why_not() -> str | None:
    """None when a server can be started here, else the reason."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    if server_bin() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run the server"
    return None


def need_server() -> None:
    reason = why_not()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL tests cannot run: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """One server: `start`, `stop` (a real shutdown: clients are cut off), `url(db)`."""

    def __init__(self) -> None:
        self.bin = server_bin()
        assert self.bin is not None
        self.root = Path(tempfile.mkdtemp(prefix="heygen-watcher-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, SERVER_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bin is not None
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")
        return result

    def start(self) -> None:
        # The port is chosen freely each time; another process may take it between the probe
        # and the server's bind, so a failed start tries another one.
        keep = self.port
        for attempt in range(5):
            self.port = keep if keep and attempt == 0 else _free_port()
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.root / "log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                return
            except RuntimeError:
                if attempt == 4:
                    raise

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def cluster() -> Iterator[Cluster]:
    """For a module-scoped fixture: one server per test module (xdist runs whole files)."""
    need_server()
    server = Cluster()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
