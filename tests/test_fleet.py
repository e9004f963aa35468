"""A fleet: several daemons watching one folder through one PostgreSQL journal, against the
sandbox. Every file is uploaded exactly once (counted at the sandbox: one stored asset per
content), a daemon killed with `kill -9` mid-upload is taken over once its leases lapse, and a
429 or a 401 seen by one daemon pauses them all. (A database outage and a daemon that stalls
past its lease: test_fleet_outage.py, which runs beside this file.)"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pgcluster
import pytest
from conftest import wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    read_sidecar,
    running,
    start_cli,
    write_config,
)
from fleet_helpers import (
    assets_per_content,
    claimed_uploading,
    fleet_config,
    fleet_document,
    shared_pause_left,
    uploaded,
    write_burst,
)

from watcher.sandbox import Fault, Sandbox
from watcher.service.fleetpause import REFRESH_SECONDS


@pytest.fixture(scope="module")
def server() -> Iterator[pgcluster.Cluster]:
    yield from pgcluster.cluster()


@pytest.fixture
def shared(server: pgcluster.Cluster) -> str:
    return server.new_database()


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
            lambda: claimed_uploading(shared, victim.pid), 30, "the victim's claims in flight"
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
        wait_for(lambda: shared_pause_left(shared, "rate_limit") > 0, 30, "the shared pause")
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
        assert all(not daemon.health.check()[0] for daemon in fleet)
        files.update(write_burst(drop, 8, offset=1))
        wait_for(lambda: first.journal.counts() == {"held": 9}, 30, "every file held")
        reloaded = time.time()
        # The key is fixed on one host (SIGHUP, or its key file changed): the fleet resumes.
        second.keys.reload()
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


def test_two_daemons_generate_each_video_once_and_poll_it_once_per_interval(
    tmp_path: Path, drop: Path, sandbox: Sandbox, shared: str
) -> None:
    """Both daemons see every video due in the shared journal; one of them generates it and
    one at a time polls it, so a video's status polls are a poll interval apart."""
    interval = 0.3
    body = {
        "video_inputs": [
            {
                "character": {"type": "avatar", "avatar_id": "a-1", "avatar_style": "normal"},
                "voice": {"type": "text", "input_text": "Hello", "voice_id": "v-1"},
                "background": {"type": "image", "url": "${asset_url}"},
            }
        ],
        "dimension": {"width": 1280, "height": 720},
    }
    templates = {
        "main": {"body": body, "initial_delay_seconds": 0.05, "poll_interval_seconds": interval}
    }
    sandbox.video_processing_seconds = 2.5  # long enough for several polls each
    one = fleet_config(sandbox, tmp_path, drop, shared, "one", "main", templates=templates)
    two = fleet_config(sandbox, tmp_path, drop, shared, "two", "main", templates=templates)

    def video_done(path: Path) -> bool:
        try:
            return bool(read_sidecar(path)["video"]["status"] == "completed")
        except (OSError, ValueError, KeyError, TypeError):
            return False

    with running(one), running(two):
        files = write_burst(drop, 4)
        wait_for(lambda: all(video_done(path) for path in files), 60, "every video completed")
    generated = [r for r in sandbox.requests if r.method == "POST" and "generate" in r.path]
    assert len(generated) == len(files) == len(sandbox.videos)
    polls: dict[str, list[float]] = {}
    for request in sandbox.requests:
        if request.method == "GET" and request.path.startswith("/v2/videos/"):
            polls.setdefault(request.path, []).append(request.at)
    assert len(polls) == len(files)
    gaps = [later - earlier for times in polls.values() for earlier, later in pairwise(times)]
    assert gaps and len(gaps) >= 2 * len(files)  # several polls of each video
    # Each poll leaves the next look one interval ahead, for the whole fleet.
    assert min(gaps) >= interval * 0.5, sorted(gaps)[:5]
