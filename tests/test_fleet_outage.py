"""A fleet through hard times, against the sandbox and a real PostgreSQL server: the database
stopped for 20 s under a burst (nothing lost, failed or doubled; a daemon started meanwhile
waits for it), and a daemon frozen past its lease (SIGSTOP) that wakes up after another took
its files over (it records none of them). A file of its own so that xdist runs its long
waits beside the other fleet tests."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgcluster
import psycopg
import pytest
from conftest import wait_for
from daemon_helpers import (
    KEY_ENV,
    env_with,
    read_sidecar,
    running,
    sidecar_of,
    start_cli,
    stop_cli,
    write_config,
)
from fleet_helpers import assets_per_content, fleet_config, fleet_document, uploaded, write_burst

from watcher.sandbox import Fault, Sandbox, SeenRequest

# As long as the outage: longer than a lease's renewal interval, short of a lease.
OUTAGE_SECONDS = 20.0


@pytest.fixture(scope="module")
def server() -> Iterator[pgcluster.Cluster]:
    yield from pgcluster.cluster()


@pytest.fixture
def shared(server: pgcluster.Cluster) -> str:
    return server.new_database()


def test_the_fleet_rides_out_a_20_second_database_outage(
    tmp_path: Path, drop: Path, sandbox: Sandbox, server: pgcluster.Cluster, shared: str
) -> None:
    """The server stops while uploads are under way and stays down for 20 s, files keep
    arriving, and a third daemon starts meanwhile: nothing fails, nobody exits, and once the
    server is back every file is uploaded exactly once. The daemons are real processes,
    stopped cleanly."""
    configs = {
        name: write_config(
            tmp_path / f"{name}.yaml", fleet_document(sandbox, tmp_path, drop, shared, name)
        )
        for name in ("one", "two", "late")
    }
    daemons = [start_cli("run", "-c", str(configs[name]), env=KEY_ENV) for name in ("one", "two")]
    try:
        files = write_burst(drop, 20)
        wait_for(lambda: any(uploaded(path) for path in files), 30, "a first upload")
        server.stop()
        stopped = time.monotonic()
        files.update(write_burst(drop, 10, offset=20))  # dropped while the database is down
        # Started during the outage: it waits (loudly) for the database, never a crash loop.
        daemons.append(start_cli("run", "-c", str(configs["late"]), env=KEY_ENV))
        files.update(write_burst(drop, 5, offset=30))
        # The outage itself, held for its length: every daemon must ride it out.
        while time.monotonic() - stopped < OUTAGE_SECONDS:
            assert [daemon.poll() for daemon in daemons] == [None] * len(daemons)
            time.sleep(0.5)
        server.start()
        wait_for(lambda: all(uploaded(path) for path in files), 120, "every sidecar")
        results = [stop_cli(daemon) for daemon in daemons]
    finally:
        for daemon in daemons:
            daemon.kill()
            daemon.wait(timeout=10)
    for code, _, err in results:
        assert code == 0, err
        assert "unreachable" in err and "is back" in err
    assert not [p for p in files if read_sidecar(p)["status"] != "uploaded"]
    per_content = assets_per_content(sandbox)
    assert {sha: per_content[sha] for sha in files.values()} == dict.fromkeys(files.values(), 1)
    assert not list(drop.glob("*.asset.json.tmp*"))
    assert all(sidecar_of(path).exists() for path in files)


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # a traceback's continuation, say
    return lines


def _owners(url: str, paths: list[str]) -> list[str | None]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT owner FROM files WHERE path = ANY(%s) AND state = 'uploading'", (paths,)
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("protocol", ["v1-presigned", "v3-direct"])
def test_a_daemon_frozen_past_its_lease_records_none_of_the_files_taken_over(
    tmp_path: Path,
    drop: Path,
    sandbox: Sandbox,
    shared: str,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    """SIGSTOP a daemon while its uploads are at the storage, for longer than its lease; another
    daemon takes its files over and is itself mid-upload when the frozen one gets SIGCONT and
    its answers: every write it then tries for those files is refused (the claim is checked
    in the very transaction of the write), and the other daemon finishes each file once."""
    lease = 2.0
    # v3: both files ride one batch, whose completion the woken daemon must not send.
    api = {"concurrency": 2, "upload_protocol": protocol}
    # The frozen daemon's PUTs are held at the storage, then answered while it is stopped.
    sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=2, count=2))
    config = write_config(
        tmp_path / "frozen.yaml",
        fleet_document(sandbox, tmp_path, drop, shared, "frozen", lease_seconds=lease, api=api),
    )
    log_path = tmp_path / "frozen.log"
    with log_path.open("w") as log_file:
        frozen = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run", "-c", str(config), "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env=env_with(KEY_ENV),
        )
    try:
        files = write_burst(drop, 2)
        paths = [str(path) for path in files]

        def puts() -> list[SeenRequest]:
            return [r for r in sandbox.requests if r.method == "PUT" and r.server == "storage"]

        wait_for(lambda: len(puts()) == 2, 30, "the frozen daemon's uploads at the storage")
        frozen.send_signal(signal.SIGSTOP)
        # The other daemon's uploads of the files it takes over are held longer.
        sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=6, count=2))
        survivor = fleet_config(
            sandbox, tmp_path, drop, shared, "survivor", lease_seconds=lease, api=api
        )
        with caplog.at_level(logging.INFO), running(survivor) as other:
            owner = other.journal.owner  # type: ignore[attr-defined]
            if protocol == "v3-direct":
                # It finds the frozen daemon's batch uploaded and completes it itself.
                wait_for(lambda: all(uploaded(path) for path in files), 30, "the other daemon")
            else:
                # It sends the bytes again into the same slots (held at the storage).
                wait_for(
                    lambda: _owners(shared, paths) == [owner, owner] and len(puts()) == 4,
                    30,
                    "the other daemon mid-upload of both files",
                )
            frozen.send_signal(signal.SIGCONT)
            lost = wait_for(
                lambda: (
                    {
                        line.get("file")
                        for line in _log_lines(log_path)
                        if "took the file over" in line.get("message", "")
                    }
                    >= set(paths)
                ),
                30,
                "the woken daemon to find both files taken over",
            )
            assert lost
            wait_for(lambda: all(uploaded(path) for path in files), 60, "every sidecar")
        code, _, _ = stop_cli(frozen)
    finally:
        frozen.kill()
        frozen.wait(timeout=10)
    assert code == 0
    woken = _log_lines(log_path)
    assert not [line for line in woken if line.get("message", "").startswith("uploaded as")]
    assert not [line for line in woken if line.get("level") in ("error", "critical")]
    recorded = {
        getattr(record, "file", None)
        for record in caplog.records
        if record.getMessage().startswith("uploaded as")
    }
    assert recorded >= set(paths)
    assert all(read_sidecar(path)["status"] == "uploaded" for path in files)
    per_content = assets_per_content(sandbox)
    assert {sha: per_content[sha] for sha in files.values()} == dict.fromkeys(files.values(), 1)
