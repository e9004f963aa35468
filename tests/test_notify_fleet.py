"""A fleet's notifications: two daemons sharing a PostgreSQL journal deliver each event once."""

from __future__ import annotations

import base64
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pgcluster
import pytest
from conftest import wait_for
from daemon_helpers import running
from fleet_helpers import fleet_config, uploaded, write_burst
from receiver import Receiver

from watcher.sandbox import Sandbox


@pytest.fixture(scope="module")
def server() -> Iterator[pgcluster.Cluster]:
    yield from pgcluster.cluster()


def test_two_daemons_deliver_each_event_once(
    tmp_path: Path, drop: Path, sandbox: Sandbox, server: pgcluster.Cluster
) -> None:
    secret = tmp_path / "webhook-secret"
    secret.write_text("whsec_" + base64.b64encode(os.urandom(24)).decode() + "\n")
    secret.chmod(0o600)
    receiver = Receiver()
    try:
        url = server.new_database()
        notify = [{"url": receiver.url, "secret_file": str(secret)}]
        one = fleet_config(sandbox, tmp_path, drop, url, "one", notify=notify)
        two = fleet_config(sandbox, tmp_path, drop, url, "two", notify=notify)
        with running(one) as first, running(two):
            files = write_burst(drop, 40)
            wait_for(lambda: all(uploaded(path) for path in files), 60, "every sidecar")
            wait_for(
                lambda: first.journal.outbox_counts() == {"delivered": len(files)},
                60,
                "every event delivered",
            )
        ids = Counter(request.headers["webhook-id"] for request in receiver.received)
        assert len(ids) == len(files)
        assert set(ids.values()) == {1}
    finally:
        receiver.close()
