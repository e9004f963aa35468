"""Notifications from the outbox: signed webhooks to a real receiver on 127.0.0.1 (verified
with the `standardwebhooks` library), retries when it fails, hangs or is not there, delivery
after `kill -9`, Apprise to a loopback target, and the config's checks."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import (
    KEY_ENV,
    cli,
    config_document,
    make_config,
    read_sidecar,
    running,
    start_cli,
    stop_cli,
    wait_sidecar,
    write_config,
)
from receiver import Receiver
from standardwebhooks.webhooks import Webhook

from watcher.sandbox import Sandbox


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-secret"
    path.write_text("whsec_" + base64.b64encode(os.urandom(24)).decode() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def hook(url: str, secret_file: Path, **entry: object) -> dict[str, object]:
    return {"url": url, "secret_file": str(secret_file), **entry}


def folder(drop: Path) -> list[dict[str, object]]:
    return [{"path": str(drop), "settle_seconds": 0.05}]


def verified(secret_file: Path, request: object) -> dict[str, object]:
    """The body, once its signature is verified as a receiver would."""
    webhook = Webhook(secret_file.read_text().strip())
    return webhook.verify(request.body, request.headers)  # type: ignore[attr-defined,no-any-return]


def test_a_signed_webhook_says_what_became_of_each_file(
    tmp_path: Path, drop: Path, sandbox: Sandbox, receiver: Receiver, secret_file: Path
):
    config = make_config(sandbox, tmp_path, folder(drop), notify=[hook(receiver.url, secret_file)])
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=1))
        (drop / "notes.txt").write_text("not media\n")
        wait_sidecar(drop / "a.png", status="uploaded")
        wait_for(lambda: len(receiver.received) == 2, 20, "two notifications")
    bodies = {
        body["data"]["event"]: (body, r)
        for r in receiver.received
        for body in [verified(secret_file, r)]
    }
    uploaded, request = bodies["uploaded"]
    assert uploaded["type"] == "file.uploaded"
    assert uploaded["data"]["path"] == str(drop / "a.png")
    sidecar = read_sidecar(drop / "a.png")
    assert uploaded["data"]["sidecar"]["asset_id"] == sidecar["asset_id"]
    assert uploaded["data"]["sidecar"]["url"] == sidecar["url"]
    assert request.headers["webhook-id"].startswith("msg_")
    rejected, _ = bodies["rejected"]
    assert rejected["type"] == "file.rejected"
    assert rejected["data"]["sidecar"]["error"].startswith("unsupported type")


def test_events_choose_what_a_target_hears(
    tmp_path: Path, drop: Path, sandbox: Sandbox, receiver: Receiver, secret_file: Path
):
    entry = hook(receiver.url, secret_file, events=["rejected"])
    config = make_config(sandbox, tmp_path, folder(drop), notify=[entry])
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=2))
        (drop / "notes.txt").write_text("not media\n")
        wait_sidecar(drop / "a.png", status="uploaded")
        wait_for(lambda: receiver.received, 20, "the rejection's notification")
        wait_sidecar(drop / "notes.txt", status="rejected")
    assert [verified(secret_file, r)["data"]["event"] for r in receiver.received] == ["rejected"]


def test_a_failing_receiver_is_retried_with_the_same_id_and_holds_up_nothing(
    tmp_path: Path, drop: Path, sandbox: Sandbox, secret_file: Path
):
    failing = Receiver(answers=[500, 503])
    try:
        config = make_config(
            sandbox, tmp_path, folder(drop), notify=[hook(failing.url, secret_file)]
        )
        with running(config):
            (drop / "a.png").write_bytes(media.png(seed=3))
            wait_sidecar(drop / "a.png", status="uploaded")
            wait_for(lambda: len(failing.received) == 3, 30, "two failures and a delivery")
        ids = {r.headers["webhook-id"] for r in failing.received}
        assert len(ids) == 1
        bodies = {r.body for r in failing.received}
        assert len(bodies) == 1  # the same event, byte for byte
    finally:
        failing.close()


def test_a_hanging_receiver_times_out_and_uploads_go_on(
    tmp_path: Path, drop: Path, sandbox: Sandbox, secret_file: Path
):
    hanging = Receiver(hang=5)
    try:
        config = make_config(
            sandbox,
            tmp_path,
            folder(drop),
            notify=[hook(hanging.url, secret_file)],
            notify_timeout_seconds=0.3,
        )
        with running(config) as daemon:
            for seed in range(5):
                (drop / f"f{seed}.png").write_bytes(media.png(seed=10 + seed))
            for seed in range(5):
                wait_sidecar(drop / f"f{seed}.png", status="uploaded")
            wait_for(
                lambda: (
                    daemon.journal.outbox_counts().get("pending", 0) >= 1
                    and any(e for e in _retried(tmp_path))
                ),
                20,
                "a timed-out delivery to be scheduled again",
            )
    finally:
        hanging.close()


def _retried(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        rows = db.execute("SELECT last_error FROM outbox WHERE attempts > 0").fetchall()
    return [row[0] for row in rows if row[0]]


def test_an_event_is_given_up_after_the_window_and_status_shows_it(
    tmp_path: Path, drop: Path, sandbox: Sandbox, secret_file: Path
):
    nobody = free_port()
    document = config_document(
        sandbox,
        tmp_path / "state",
        folder(drop),
        notify=[hook(f"http://127.0.0.1:{nobody}/hook", secret_file)],
        notify_give_up_seconds=0,
    )
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        (drop / "a.png").write_bytes(media.png(seed=4))
        wait_sidecar(drop / "a.png", timeout=30, status="uploaded")
        wait_for(lambda: "1 dead" in cli("status", "-c", str(config)).stdout, 20, "dead event")
        shown = cli("status", "-c", str(config)).stdout
        assert f"dead notification to http://127.0.0.1:{nobody}/…" in shown
        assert str(secret_file.read_text().strip()) not in shown
    finally:
        code, _, err = stop_cli(process)
    assert code == 0, err
    assert secret_file.read_text().strip() not in err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_kill_9_with_events_pending_delivers_them_after_the_restart_with_the_same_id(
    tmp_path: Path, drop: Path, sandbox: Sandbox, secret_file: Path
):
    port = free_port()  # nobody listens yet: every delivery is refused
    document = config_document(
        sandbox,
        tmp_path / "state",
        folder(drop),
        notify=[hook(f"http://127.0.0.1:{port}/hook", secret_file)],
    )
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    (drop / "a.png").write_bytes(media.png(seed=5))
    wait_sidecar(drop / "a.png", timeout=30, status="uploaded")
    wait_for(lambda: _retried(tmp_path), 20, "a refused delivery")
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        (written,) = db.execute("SELECT id FROM outbox").fetchone()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    late = Receiver(port=port)
    try:
        process = start_cli("run", "-c", str(config), env=KEY_ENV)
        try:
            wait_for(lambda: late.received, 60, "the delivery after the restart")
        finally:
            code, _, err = stop_cli(process)
        assert code == 0, err
        (request,) = late.received
        assert request.headers["webhook-id"] == written
        assert verified(secret_file, request)["data"]["event"] == "uploaded"
    finally:
        late.close()


def test_apprise_delivers_a_short_message_to_a_loopback_target(
    tmp_path: Path, drop: Path, sandbox: Sandbox, receiver: Receiver
):
    target = f"json://user:hunter2@127.0.0.1:{receiver.port}/apprise"
    config = make_config(sandbox, tmp_path, folder(drop), notify=[{"url": target}])
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=6))
        wait_sidecar(drop / "a.png", status="uploaded")
        wait_for(lambda: receiver.received, 20, "Apprise's message")
    message = json.loads(receiver.received[0].body)
    assert "a.png" in message["title"] and "uploaded to HeyGen" in message["title"]
    assert read_sidecar(drop / "a.png")["asset_id"] in message["message"]


@pytest.mark.parametrize(
    ("entry", "key", "reason"),
    [
        ({"url": "http://example.com/hook"}, "notify[0].url", "plain http:// is refused"),
        ({"url": "https://example.com/hook"}, "notify[0].secret_file", "is required"),
        ({"url": "https://h/x", "events": ["done"]}, "notify[0].events[0]", "unknown event"),
        ({"url": "nonsense"}, "notify[0].url", "has no scheme"),
    ],
)
def test_check_config_names_the_entry_and_the_reason(
    tmp_path: Path, drop: Path, sandbox: Sandbox, entry: dict[str, object], key: str, reason: str
):
    document = config_document(sandbox, tmp_path / "state", folder(drop), notify=[entry])
    config = write_config(tmp_path / "config.yaml", document)
    done = cli("check-config", "-c", str(config), env=KEY_ENV)
    assert done.returncode == 2
    assert f"{config}: {key}: {reason}" in done.stderr, done.stderr


def test_a_secret_others_can_read_is_refused(
    tmp_path: Path, drop: Path, sandbox: Sandbox, secret_file: Path
):
    secret_file.chmod(0o644)
    entry = hook("https://example.com/hook", secret_file)
    document = config_document(sandbox, tmp_path / "state", folder(drop), notify=[entry])
    done = cli("check-config", "-c", str(write_config(tmp_path / "c.yaml", document)), env=KEY_ENV)
    assert done.returncode == 2
    assert "notify[0].secret_file: permissions 0644" in done.stderr
    assert secret_file.read_text().strip() not in done.stderr


def test_check_config_online_sends_a_test_notification_to_each_target(
    tmp_path: Path, drop: Path, sandbox: Sandbox, receiver: Receiver, secret_file: Path
):
    nobody = free_port()
    entries = [hook(receiver.url, secret_file), hook(f"http://127.0.0.1:{nobody}/x", secret_file)]
    document = config_document(sandbox, tmp_path / "state", folder(drop), notify=entries)
    config = write_config(tmp_path / "config.yaml", document)
    done = cli("check-config", "--online", "-c", str(config), env=KEY_ENV)
    assert done.returncode == 2
    assert (
        f"notify[0] (http://127.0.0.1:{receiver.port}/…): the test notification was delivered"
        in (done.stdout)
    )
    assert f"notify[1].url: the test notification to http://127.0.0.1:{nobody}/… was not" in (
        done.stderr
    )
    (request,) = receiver.received
    assert verified(secret_file, request)["type"] == "test"


def test_a_folders_own_targets_hear_only_its_files(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, secret_file: Path
):
    loud, quiet = tmp_path / "loud", tmp_path / "quiet"
    loud.mkdir()
    quiet.mkdir()
    folders = [
        {"path": str(loud), "settle_seconds": 0.05, "notify": [hook(receiver.url, secret_file)]},
        {"path": str(quiet), "settle_seconds": 0.05},
    ]
    config = make_config(sandbox, tmp_path, folders)
    with running(config):
        (quiet / "q.png").write_bytes(media.png(seed=20))
        (loud / "l.png").write_bytes(media.png(seed=21))
        wait_sidecar(quiet / "q.png", status="uploaded")
        wait_sidecar(loud / "l.png", status="uploaded")
        wait_for(lambda: receiver.received, 20, "the loud folder's notification")
    paths = [verified(secret_file, r)["data"]["path"] for r in receiver.received]
    assert paths == [str(loud / "l.png")]


def test_apprise_credentials_stay_out_of_the_logs(
    tmp_path: Path, drop: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
):
    nobody = free_port()
    target = f"json://user:hunter2@127.0.0.1:{nobody}/apprise"
    config = make_config(sandbox, tmp_path, folder(drop), notify=[{"url": target}])
    with caplog.at_level("DEBUG"), running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=22))
        wait_sidecar(drop / "a.png", status="uploaded")
        wait_for(lambda: _retried(tmp_path), 20, "a failed delivery")
        pending = daemon.journal.outbox_counts()
    assert pending.get("pending") == 1
    assert "hunter2" not in caplog.text
    assert f"json://127.0.0.1:{nobody}/…" in caplog.text


def test_an_apprise_url_without_apprise_is_a_config_error(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    document = config_document(
        sandbox, tmp_path / "state", folder(drop), notify=[{"url": "ntfy://ntfy.sh/drops"}]
    )
    config = write_config(tmp_path / "config.yaml", document)
    blocked = "import sys; sys.modules['apprise'] = None; "
    run = "from watcher.commands.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", blocked + run, "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **KEY_ENV},
        check=False,
    )
    assert done.returncode == 2
    assert (
        f"{config}: notify[0].url: ntfy:// is delivered by Apprise, which is not installed: "
        "pip install 'heygen-watcher[notify]'"
    ) in done.stderr


def test_an_outbox_the_receivers_cannot_keep_up_with_is_said_once(
    tmp_path: Path,
    drop: Path,
    sandbox: Sandbox,
    secret_file: Path,
    caplog: pytest.LogCaptureFixture,
):
    from watcher.config.live import LiveConfig
    from watcher.service.outbox import PENDING_WARNING, OutboxWorker
    from watcher.state.journal import OutboxEvent
    from watcher.state.journal_sqlite import SqliteJournal

    target = f"http://127.0.0.1:{free_port()}/hook"
    config = make_config(sandbox, tmp_path, folder(drop), notify=[hook(target, secret_file)])
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    try:
        now = time.time()
        journal.add_events(
            [
                OutboxEvent(f"msg_{n}", "uploaded", "/x", target, "{}", next_at=now, created_at=now)
                for n in range(PENDING_WARNING + 1)
            ]
        )
        worker = OutboxWorker(LiveConfig(config), journal)
        worker.start()
        try:
            wait_for(lambda: "do not keep up" in caplog.text, 20, "the warning")
        finally:
            worker.stop(2.0)
        assert caplog.text.count("do not keep up") == 1
        assert journal.outbox_counts()["pending"] == PENDING_WARNING + 1  # nothing dropped
    finally:
        journal.close()
