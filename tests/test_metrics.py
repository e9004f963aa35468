"""Metrics from pipeline events, scraped over real HTTP on 127.0.0.1; parse_listen."""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from watcher.service.metrics import Metrics, MetricsServer, _ProcessCollector, parse_listen


class Http:
    """GET one path; returns status, headers and body (errors are answers, not exceptions)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from the exposition text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def health_state() -> dict[str, object]:
    return {"healthy": True, "reason": ""}


@pytest.fixture
def served(health_state: dict[str, object]) -> Iterator[tuple[Metrics, Http]]:
    metrics = Metrics()

    def health() -> tuple[bool, str]:
        return bool(health_state["healthy"]), str(health_state["reason"])

    server = MetricsServer("127.0.0.1:0", metrics, health)
    server.start()
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    yield metrics, Http(host, port)
    server.stop()


def feed_events(metrics: Metrics) -> None:
    metrics.on_event("uploaded", {"content_type": "image/png", "bytes": 1000, "seconds": 0.07})
    metrics.on_event("uploaded", {"content_type": "image/png", "bytes": 500, "seconds": 3.0})
    metrics.on_event("uploaded", {"content_type": "video/mp4", "bytes": 10**8, "seconds": 400})
    metrics.on_event("rejected", {"reason": "too large"})
    metrics.on_event("rejected", {"reason": "empty"})
    metrics.on_event("rejected", {"reason": "empty"})
    metrics.on_event("failure", {"kind": "transient"})
    metrics.on_event("skipped", {"reason": "symlink"})
    metrics.on_event("video", {"status": "completed"})
    metrics.on_event("video", {"status": "failed"})
    metrics.set_queue_depth({"queued": 3, "uploading": 2, "done": 7})


def test_scrape_after_events(served: tuple[Metrics, Http]) -> None:
    metrics, http = served
    feed_events(metrics)
    status, headers, body = http.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = samples(body.decode())
    assert values[("heygen_watcher_uploads_total", (("content_type", "image/png"),))] == 2
    assert values[("heygen_watcher_uploads_total", (("content_type", "video/mp4"),))] == 1
    assert values[("heygen_watcher_upload_bytes_total", ())] == 1500 + 10**8
    assert values[("heygen_watcher_rejected_total", (("reason", "empty"),))] == 2
    assert values[("heygen_watcher_rejected_total", (("reason", "too large"),))] == 1
    assert values[("heygen_watcher_failures_total", (("kind", "transient"),))] == 1
    assert values[("heygen_watcher_failures_total", (("kind", "auth"),))] == 0  # pre-created
    assert values[("heygen_watcher_videos_total", (("status", "completed"),))] == 1
    assert values[("heygen_watcher_videos_total", (("status", "failed"),))] == 1
    assert values[("heygen_watcher_queue_depth", (("state", "queued"),))] == 3
    assert values[("heygen_watcher_upload_seconds_count", ())] == 3
    assert values[("heygen_watcher_upload_seconds_sum", ())] == pytest.approx(403.07)
    assert values[("heygen_watcher_upload_seconds_bucket", (("le", "0.1"),))] == 1
    assert values[("heygen_watcher_upload_seconds_bucket", (("le", "5.0"),))] == 2
    assert values[("heygen_watcher_upload_seconds_bucket", (("le", "600.0"),))] == 3
    # Skipped files are not counted anywhere.
    assert "symlink" not in body.decode()
    # The process collector works in a private registry too.
    assert ("process_resident_memory_bytes", ()) in values


def test_queue_depth_zeroes_states_that_disappear() -> None:
    metrics = Metrics()
    metrics.set_queue_depth({"queued": 3, "failed": 1})
    metrics.set_queue_depth({"queued": 1})
    values = samples(metrics.render().decode())
    assert values[("heygen_watcher_queue_depth", (("state", "queued"),))] == 1
    assert values[("heygen_watcher_queue_depth", (("state", "failed"),))] == 0
    metrics.set_queue_depth({"failed": 2})
    values = samples(metrics.render().decode())
    assert values[("heygen_watcher_queue_depth", (("state", "queued"),))] == 0
    assert values[("heygen_watcher_queue_depth", (("state", "failed"),))] == 2


def test_instances_do_not_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.on_event("failure", {"kind": "auth"})
    assert (
        samples(second.render().decode())[("heygen_watcher_failures_total", (("kind", "auth"),))]
        == 0
    )


def test_malformed_or_unknown_events_never_raise() -> None:
    metrics = Metrics()
    metrics.on_event("uploaded", {"content_type": None, "bytes": "lots", "seconds": 1})
    metrics.on_event("uploaded", {})
    metrics.on_event("rejected", {})
    metrics.on_event("something-new", {"x": 1})
    metrics.on_event("failure", None)  # type: ignore[arg-type]
    values = samples(metrics.render().decode())
    assert values[("heygen_watcher_uploads_total", (("content_type", "unknown"),))] == 2
    assert values[("heygen_watcher_rejected_total", (("reason", "unknown"),))] == 1


def test_healthz(served: tuple[Metrics, Http], health_state: dict[str, object]) -> None:
    _, http = served
    status, headers, body = http.get("/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["Content-Type"].startswith("text/plain")
    health_state.update(healthy=False, reason="uploads paused: the API refused the key")
    status, _, body = http.get("/healthz")
    assert (status, body) == (503, b"uploads paused: the API refused the key\n")


def test_healthz_when_the_check_itself_fails() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("journal is closed")

    server = MetricsServer("127.0.0.1:0", Metrics(), broken)
    server.start()
    try:
        status, _, body = Http(*server.address).get("/healthz")
    finally:
        server.stop()
    assert status == 503
    assert b"journal is closed" in body


def test_unknown_paths_are_404(served: tuple[Metrics, Http]) -> None:
    _, http = served
    for path in ("/", "/metrics/extra", "/health", "/favicon.ico"):
        assert http.get(path)[0] == 404, path
    assert http.get("/metrics?name[]=x")[0] == 200


def test_head_has_headers_but_no_body(served: tuple[Metrics, Http]) -> None:
    _, http = served
    status, headers, body = http.get("/metrics", method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) > 0


def test_scrapes_are_not_logged_to_stderr(
    served: tuple[Metrics, Http],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, http = served
    caplog.set_level(logging.INFO, logger="watcher.service.metrics")
    http.get("/metrics")
    http.get("/nothing-here")
    assert capfd.readouterr().err == ""
    assert not [record for record in caplog.records if record.levelno >= logging.INFO]


def test_stop_releases_the_port_and_start_twice_is_refused() -> None:
    server = MetricsServer("127.0.0.1:0", Metrics(), lambda: (True, ""))
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    port = server.address[1]
    server.stop()
    server.stop()  # harmless
    again = MetricsServer(f"127.0.0.1:{port}", Metrics(), lambda: (True, ""))
    again.start()
    try:
        assert Http("127.0.0.1", port).get("/healthz")[0] == 200
    finally:
        again.stop()


def test_ipv6_loopback_when_available() -> None:
    server = MetricsServer("[::1]:0", Metrics(), lambda: (True, ""))
    try:
        server.start()
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        host, port = server.address
        assert host == "::1"
        assert Http("::1", port).get("/healthz")[0] == 200
    finally:
        server.stop()


# -- parse_listen -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("  127.0.0.1:9464 ", ("127.0.0.1", 9464)),
        ("localhost:9464", ("localhost", 9464)),
        ("metrics.example.internal:80", ("metrics.example.internal", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:0", ("::", 0)),
        ("[fe80::1%eth0]:9464", ("fe80::1%eth0", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("127.0.0.1", "no port"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:-1", "port must be a number"),
        ("127.0.0.1:65536", "out of range"),
        ("::1:9464", "brackets"),
        ("[::1:9464", "unbalanced brackets"),
        ("::1]:9464", "unbalanced brackets"),
        ("[127.0.0.1]:9464", "not an IPv6 address"),
        ("[nonsense]:9464", "not an IPv6 address"),
        ("bad host:9464", "not a valid host name"),
        ("under_score:9464", "not a valid host name"),
    ],
)
def test_parse_listen_errors(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_listen(value)


def test_a_bad_listen_address_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="no port"):
        MetricsServer("9464", Metrics(), lambda: (True, ""))


def test_process_metrics_survive_a_hidden_proc_stat(tmp_path: Path) -> None:
    # Under ProcSubset=pid only /proc/<pid> is visible; /proc/stat (the boot time) is not.
    fake_proc = tmp_path / "proc"
    fake_proc.mkdir()
    (fake_proc / "self").symlink_to("/proc/self")
    registry = CollectorRegistry()
    _ProcessCollector(proc=str(fake_proc), registry=registry)
    values = samples(generate_latest(registry).decode())
    # The same start time as prometheus_client works out from the real /proc/stat.
    stock = CollectorRegistry()
    ProcessCollector(registry=stock)
    reference = samples(generate_latest(stock).decode())
    key = ("process_start_time_seconds", ())
    assert values[key] == pytest.approx(reference[key], abs=1.0)
    assert values[("process_resident_memory_bytes", ())] > 0
