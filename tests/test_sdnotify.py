"""sd_notify over real AF_UNIX datagram sockets, the watchdog interval and the pinger."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.service.sdnotify import Notifier, WatchdogPinger, watchdog_interval_seconds


class Listener:
    """The systemd side: a bound datagram socket that collects what arrives."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[str] = []

    def drain(self, timeout: float = 0.0) -> list[str]:
        """Everything received so far, waiting up to ``timeout`` for the first datagram."""
        self.sock.settimeout(timeout)  # 0 makes the socket non-blocking
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
                self.sock.settimeout(0)  # the rest: only what is already there
        except (BlockingIOError, TimeoutError):
            pass
        return self.messages

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.drain(0.01)) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"expected {count} message(s), got {self.messages}")
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Listener, str]]:
    path = str(tmp_path / "notify.sock")
    server = Listener(path)
    yield server, path
    server.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[Listener, str]]:
    name = f"heygen-watcher-test-{uuid.uuid4().hex}"
    server = Listener("\0" + name)
    yield server, "@" + name
    server.close()


def test_messages_reach_a_socket_in_the_file_system(listener: tuple[Listener, str]) -> None:
    server, path = listener
    notifier = Notifier(path)
    assert notifier.enabled
    notifier.send(READY=1, STATUS="3 queued")
    notifier.status("idle")
    notifier.watchdog()
    notifier.stopping()
    notifier.ready()
    notifier.ready("watching 2 folders")
    assert server.wait_for(6) == [
        "READY=1\nSTATUS=3 queued",
        "STATUS=idle",
        "WATCHDOG=1",
        "STOPPING=1",
        "READY=1",
        "READY=1\nSTATUS=watching 2 folders",
    ]
    notifier.close()


def test_abstract_namespace_socket(abstract_listener: tuple[Listener, str]) -> None:
    server, name = abstract_listener
    notifier = Notifier(name)
    notifier.watchdog()
    assert server.wait_for(1) == ["WATCHDOG=1"]


def test_socket_path_comes_from_the_environment(
    listener: tuple[Listener, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().status("from env")
    assert server.wait_for(1) == ["STATUS=from env"]


def test_reloading_carries_a_monotonic_timestamp(listener: tuple[Listener, str]) -> None:
    server, path = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    (message,) = server.wait_for(1)
    fields = dict(line.split("=", 1) for line in message.splitlines())
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_a_newline_in_a_value_cannot_inject_a_field(listener: tuple[Listener, str]) -> None:
    server, path = listener
    Notifier(path).status("line one\nREADY=1")
    assert server.wait_for(1) == ["STATUS=line one READY=1"]


@pytest.mark.parametrize("value", [None, ""])
def test_unset_socket_sends_nothing(
    value: str | None, listener: tuple[Listener, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = listener
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    assert notifier._socket is None  # no socket was even created
    assert server.drain(0.05) == []


def test_a_missing_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    notifier.ready("still fine")  # logged at debug, never raised
    notifier.watchdog()


def test_sending_resumes_after_the_listener_comes_back(tmp_path: Path) -> None:
    path = str(tmp_path / "late.sock")
    notifier = Notifier(path)
    notifier.watchdog()  # nobody listening yet
    server = Listener(path)
    try:
        notifier.status("back")
        assert server.wait_for(1) == ["STATUS=back"]
    finally:
        server.close()


# -- watchdog_interval_seconds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_seconds(environ) == expected


def test_watchdog_interval_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_seconds() == 2.0


# -- WatchdogPinger -----------------------------------------------------------------------------


def count_pings(server: Listener, seconds: float) -> int:
    """Pings that arrive within ``seconds`` from now (a deadline-bounded poll)."""
    start = len(server.drain())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.drain(min(0.01, max(0.0, deadline - time.monotonic())))
    return len(server.drain()) - start


def test_pinger_pings_at_the_configured_rate(listener: tuple[Listener, str]) -> None:
    server, path = listener
    pinger = WatchdogPinger(Notifier(path), interval=0.05)
    pinger.start()
    try:
        pings = count_pings(server, 0.5)
    finally:
        pinger.stop()
    # About ten in half a second; generous bounds keep a busy test machine from failing it.
    assert 5 <= pings <= 12, pings
    assert set(server.messages) == {"WATCHDOG=1"}


def test_pinger_pauses_while_the_pipeline_is_stuck(listener: tuple[Listener, str]) -> None:
    server, path = listener
    healthy = {"value": True}
    pinger = WatchdogPinger(Notifier(path), interval=0.05, progress_ok=lambda: healthy["value"])
    pinger.start()
    try:
        server.wait_for(2)
        healthy["value"] = False
        count_pings(server, 0.1)  # a ping already on its way may still arrive
        assert count_pings(server, 0.3) == 0
        healthy["value"] = True
        assert count_pings(server, 0.3) >= 2
    finally:
        pinger.stop()


def test_a_failing_progress_check_counts_as_stuck(listener: tuple[Listener, str]) -> None:
    server, path = listener

    def broken() -> bool:
        raise RuntimeError("boom")

    pinger = WatchdogPinger(Notifier(path), interval=0.05, progress_ok=broken)
    pinger.start()
    try:
        assert count_pings(server, 0.2) == 0
    finally:
        pinger.stop()


def test_pinger_stops_promptly_and_sends_nothing_after(listener: tuple[Listener, str]) -> None:
    server, path = listener
    pinger = WatchdogPinger(Notifier(path), interval=60.0)
    pinger.start()
    server.wait_for(1)  # the first ping comes at once, not after a whole interval
    started = time.monotonic()
    pinger.stop()
    assert time.monotonic() - started < 30  # at once, not after the 60 s interval
    assert count_pings(server, 0.1) == 0


def test_pinger_rejects_a_useless_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        WatchdogPinger(Notifier(""), interval=0)
