"""A fleet: several daemons watching one folder through one PostgreSQL journal, against the
sandbox. Every file is uploaded exactly once (counted at the sandbox: one stored asset per
content), a daemon killed with `kill -9` mid-upload is taken over once its leases lapse, and a
database restart pauses the fleet without losing, failing or doubling anything."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import media
import pgcluster
import psycopg
import pytest
from conftest import wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    config_document,
    read_sidecar,
    running,
    sidecar_of,
    start_cli,
    stop_cli,
    write_config,
)

from watcher.config import Config, parse_config
from watcher.sandbox import Fault, Sandbox
from watcher.service.fleetpause import REFRESH_SECONDS


@pytest.fixture(scope="module")
def server() -> Iterator[pgcluster.Cluster]:
    yield from pgcluster.cluster()


@pytest.fixture
def shared(server: pgcluster.Cluster) -> str:
    return server.new_database()


def fleet_document(
    sandbox: Sandbox, tmp_path: Path, drop: Path, url: str, name: str, **top: Any
) -> dict[str, Any]:
    """One daemon's config: its own state directory, the shared journal, the same folder."""
    folder = {"path": str(drop), "settle_seconds": 0.1, "trust_close_write": True}
    return config_document(
        sandbox,
        tmp_path / f"state-{name}",
        [folder],
        journal=url,
        rescan_seconds=3600,
        **top,
    )


def fleet_config(
    sandbox: Sandbox, tmp_path: Path, drop: Path, url: str, name: str, **top: Any
) -> Config:
    document = fleet_document(sandbox, tmp_path, drop, url, name, **top)
    return parse_config(document, f"{name}.yaml", tmp_path)


def uploaded(path: Path) -> bool:
    try:
        return bool(read_sidecar(path)["status"] == "uploaded")
    except (OSError, ValueError, KeyError):
        return False


def assets_per_content(sandbox: Sandbox) -> Counter[str]:
    return Counter(asset.sha256 for asset in sandbox.assets.values())


def write_burst(drop: Path, count: int, offset: int = 0) -> dict[Path, str]:
    """``count`` distinct PNGs, each written in one go (as `cp` does); path → sha256."""
    written = {}
    for number in range(offset, offset + count):
        # Width and seed together make every file's bytes distinct (the seed alone wraps).
        data = media.png(width=4 + number // 256, seed=number % 256)
        path = drop / f"img-{number:04d}.png"
        path.write_bytes(data)
        written[path] = hashlib.sha256(data).hexdigest()
    return written


def test_two_daemons_on_one_folder_upload_each_file_exactly_once(
    tmp_path: Path, drop: Path, sandbox: Sandbox, shared: str
) -> None:
    one = fleet_config(sandbox, tmp_path, drop, shared, "one")
    two = fleet_config(sandbox, tmp_path, drop, shared, "two")
    with running(one) as first, running(two) as second:
        files = write_burst(drop, 500)
        wait_for(lambda: all(uploaded(path) for path in files), 120, "every sidecar")
        # The sidecar is written just before the row is marked uploaded.
        wait_for(lambda: first.journal.counts() == {"uploaded": 500}, 30, "every row uploaded")
        counts = (first.journal.counts(), second.journal.counts())
    per_content = assets_per_content(sandbox)
    assert {sha: per_content[sha] for sha in files.values()} == dict.fromkeys(files.values(), 1)
    assert len(sandbox.assets) == len(files)
    # One view: both daemons read the same rows.
    assert counts[0] == counts[1] == {"uploaded": 500}
    # One slot per file: no daemon asked for a slot for a file another one had claimed.
    slots = [r for r in sandbox.requests if r.method == "POST" and r.path == "/v1/asset"]
    assert len([r for r in slots if r.status == 200]) == len(files)


def _claimed_uploading(url: str, pid: int) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('files')").fetchone() == (None,):
            return []  # the daemon has not created the schema yet
        rows = conn.execute(
            "SELECT path FROM files WHERE owner LIKE %s AND state = 'uploading'",
            (f"%:{pid}:%",),
        ).fetchall()
    return [row[0] for row in rows]


def test_a_daemon_killed_mid_upload_is_taken_over_once_its_leases_lapse(
    tmp_path: Path,
    drop: Path,
    sandbox: Sandbox,
    shared: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lease = 2.0
    files = write_burst(drop, 12)
    # Every first PUT is held, so the victim holds claims with uploads in flight.
    sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=4, count=len(files)))
    victim_config = write_config(
        tmp_path / "victim.yaml",
        fleet_document(sandbox, tmp_path, drop, shared, "victim", lease_seconds=lease),
    )
    victim = start_cli("run", "-c", str(victim_config), env=KEY_ENV)
    try:
        held = wait_for(
            lambda: _claimed_uploading(shared, victim.pid), 30, "the victim's claims in flight"
        )
        survivor = fleet_config(sandbox, tmp_path, drop, shared, "survivor", lease_seconds=lease)
        with caplog.at_level(logging.WARNING), running(survivor):
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            victim.wait(timeout=10)
            sandbox.clear_faults()
            wait_for(lambda: all(uploaded(path) for path in files), 90, "every sidecar")
            failover = time.monotonic() - killed_at
    finally:
        victim.kill()
        victim.wait(timeout=10)
    per_content = assets_per_content(sandbox)
    assert {sha: per_content[sha] for sha in files.values()} == dict.fromkeys(files.values(), 1)
    assert len(sandbox.assets) == len(files)
    taken_over = {
        getattr(record, "file", None)
        for record in caplog.records
        if "claim lapsed" in record.getMessage()
    }
    assert set(held) <= taken_over
    # The taken-over files went to the slots the victim had recorded: no new slot for them.
    slot_requests = [
        r for r in sandbox.requests if r.method == "POST" and r.path == "/v1/asset" and r.status
    ]
    assert len(slot_requests) == len(files)
    print(
        f"failover: {len(held)} file(s) held by the killed daemon, all done {failover:.1f}s "
        f"after kill -9 (lease {lease:.0f}s)"
    )


def test_the_fleet_survives_a_database_restart(
    tmp_path: Path, drop: Path, sandbox: Sandbox, server: pgcluster.Cluster, shared: str
) -> None:
    """The server stops while uploads are under way: nothing fails, and once it is back
    every file is uploaded exactly once. The daemons are real processes, stopped cleanly."""
    configs = [
        write_config(
            tmp_path / f"{name}.yaml", fleet_document(sandbox, tmp_path, drop, shared, name)
        )
        for name in ("one", "two")
    ]
    daemons = [start_cli("run", "-c", str(config), env=KEY_ENV) for config in configs]
    try:
        files = write_burst(drop, 20)
        wait_for(lambda: any(uploaded(path) for path in files), 30, "a first upload")
        server.stop()
        more = write_burst(drop, 10, offset=20)  # dropped while the database is down
        time.sleep(3)  # the outage itself: the daemons must ride it out
        assert all(daemon.poll() is None for daemon in daemons)
        server.start()
        files.update(more)
        wait_for(lambda: all(uploaded(path) for path in files), 90, "every sidecar")
        results = [stop_cli(daemon) for daemon in daemons]
    finally:
        for daemon in daemons:
            daemon.kill()
            daemon.wait(timeout=10)
    for code, _, err in results:
        assert code == 0, err
    assert any("unreachable" in err for _, _, err in results)
    assert not [p for p in files if read_sidecar(p)["status"] != "uploaded"]
    per_content = assets_per_content(sandbox)
    assert {sha: per_content[sha] for sha in files.values()} == dict.fromkeys(files.values(), 1)
    assert not list(drop.glob("*.asset.json.tmp*"))
    assert all(sidecar_of(path).exists() for path in files)


def test_a_daemon_started_while_the_database_is_down_waits_for_it(
    tmp_path: Path, drop: Path, sandbox: Sandbox, server: pgcluster.Cluster, shared: str
) -> None:
    """Not a crash loop: the daemon waits (loudly) and starts work once the server answers."""
    config = write_config(
        tmp_path / "late.yaml", fleet_document(sandbox, tmp_path, drop, shared, "late")
    )
    files = write_burst(drop, 3)
    server.stop()
    daemon = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            daemon.wait(timeout=3)  # still there, waiting, not exited
        server.start()
        wait_for(lambda: all(uploaded(path) for path in files), 60, "every sidecar")
        code, _, err = stop_cli(daemon)
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
    assert code == 0, err
    assert "unreachable" in err and "is back" in err


def test_status_shows_the_whole_fleet_from_any_host(
    tmp_path: Path, drop: Path, sandbox: Sandbox, shared: str
) -> None:
    one = fleet_config(sandbox, tmp_path, drop, shared, "one")
    two = fleet_config(sandbox, tmp_path, drop, shared, "two")
    # A third host's config: its own (empty) state directory, the same journal.
    viewer = write_config(
        tmp_path / "viewer.yaml", fleet_document(sandbox, tmp_path, drop, shared, "viewer")
    )
    with running(one), running(two):
        files = write_burst(drop, 4)
        wait_for(lambda: all(uploaded(path) for path in files), 30, "every sidecar")
        result = cli("status", "-c", str(viewer), "--json")
        text = cli("status", "-c", str(viewer))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["running"] is True
    assert report["journal"] == shared
    assert [daemon["pid"] for daemon in report["daemons"]] == [os.getpid(), os.getpid()]
    assert report["counts"]["uploaded"] >= 3  # the last may still be recording
    assert text.stdout.count("  daemon ") == 2 and "in flight" in text.stdout
    # Stopped cleanly, they leave the view.
    after = json.loads(cli("status", "-c", str(viewer), "--json").stdout)
    assert after["daemons"] == [] and after["running"] is False


def _shared_pause_left(url: str, kind: str) -> float:
    """Seconds left of the fleet's pause of ``kind`` as recorded in the database."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('pauses')").fetchone() == (None,):
            return 0.0
        row = conn.execute(
            "SELECT until - EXTRACT(EPOCH FROM clock_timestamp()) FROM pauses WHERE kind = %s",
            (kind,),
        ).fetchone()
    return float(row[0]) if row else 0.0


def test_a_429_seen_by_one_daemon_pauses_the_whole_fleet(
    tmp_path: Path, drop: Path, sandbox: Sandbox, shared: str
) -> None:
    retry_after = 2.0
    api = {"max_attempts": 8}
    one = fleet_config(sandbox, tmp_path, drop, shared, "one", api=api)
    two = fleet_config(sandbox, tmp_path, drop, shared, "two", api=api)
    with running(one), running(two):
        sandbox.inject(
            Fault(method="POST", path_prefix="/v1/asset", status=429, retry_after="2", count=1)
        )
        first = write_burst(drop, 1)
        wait_for(lambda: any(r.status == 429 for r in sandbox.requests), 30, "the refused request")
        wait_for(lambda: _shared_pause_left(shared, "rate_limit") > 0, 30, "the shared pause")
        recorded = time.time()
        # Files arriving well inside the pause: whichever daemon takes them must wait it out.
        time.sleep(0.5)  # pacing the writer, not waiting for the daemons
        files = {**first, **write_burst(drop, 8, offset=1)}
        wait_for(lambda: all(uploaded(path) for path in files), 60, "every sidecar")
    creates = [r for r in sandbox.requests if r.path == "/v1/asset"]
    (refused,) = [r.at for r in creates if r.status == 429]
    # Nobody in the fleet sent a slot request during the pause. A daemon looks at the shared
    # pause at most REFRESH_SECONDS late, so only a request that left before then could land
    # after the pause was recorded; none may land later, until the pause ends (its last
    # 0.3 s are left for clock reading).
    during = [r for r in creates if recorded + REFRESH_SECONDS < r.at < refused + retry_after - 0.3]
    timeline = [(round(r.at - refused, 3), r.status, r.server) for r in sandbox.requests]
    assert not during, f"{len(during)} request(s) sent during the fleet's pause: {timeline}"
    per_content = assets_per_content(sandbox)
    assert {sha: per_content[sha] for sha in files.values()} == dict.fromkeys(files.values(), 1)


def test_a_401_seen_by_one_daemon_pauses_the_whole_fleet_until_a_key_is_reloaded(
    tmp_path: Path, drop: Path, sandbox: Sandbox, shared: str
) -> None:
    one = fleet_config(sandbox, tmp_path, drop, shared, "one")
    two = fleet_config(sandbox, tmp_path, drop, shared, "two")
    with running(one) as first, running(two) as second:
        fleet = (first, second)
        sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=401, count=1))
        files = write_burst(drop, 1)
        wait_for(lambda: any(r.status == 401 for r in sandbox.requests), 30, "the refused key")
        # Both pause: the one whose key was refused, and the other through the journal.
        wait_for(
            lambda: all(daemon.pipeline.auth_pause.active for daemon in fleet), 10, "both paused"
        )
        assert all(not daemon.health()[0] for daemon in fleet)
        files.update(write_burst(drop, 8, offset=1))
        wait_for(lambda: first.journal.counts() == {"held": 9}, 30, "every file held")
        reloaded = time.time()
        # The key is fixed on one host (SIGHUP, or its key file changed): the fleet resumes.
        second.reload_key()
        wait_for(lambda: all(uploaded(path) for path in files), 60, "every sidecar")
        wait_for(
            lambda: not any(daemon.pipeline.auth_pause.active for daemon in fleet),
            10,
            "both resumed",
        )
        # Files arriving now are uploaded as usual.
        later = write_burst(drop, 6, offset=9)
        wait_for(lambda: all(uploaded(path) for path in later), 60, "every later sidecar")
    api = [r for r in sandbox.requests if r.server == "api"]
    (refused,) = [r.at for r in api if r.status == 401]
    during = [r for r in api if refused < r.at < reloaded]
    assert not during, f"requests during the fleet's 401 pause: {[(r.at, r.path) for r in during]}"
    per_content = assets_per_content(sandbox)
    everything = {**files, **later}
    assert {sha: per_content[sha] for sha in everything.values()} == dict.fromkeys(
        everything.values(), 1
    )
