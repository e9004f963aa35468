"""Prometheus metrics fed by the pipeline's events, and a small HTTP endpoint for them.

`Metrics` keeps its own `CollectorRegistry`, so several instances (tests, a one-shot command
next to a daemon) never collide in prometheus_client's global registry. `MetricsServer` serves
``/metrics`` and ``/healthz`` from a daemon thread; it is meant for a loopback or otherwise
trusted address, as it has no authentication.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from watcher.config.listen import parse_listen

log = logging.getLogger(__name__)

# The classic text format: every Prometheus version and most other scrapers read it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# From a small image on a fast link (~50 ms) to a large video on a slow one (10 min).
UPLOAD_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# Known label values start at zero, so rate() and alerts work before the first occurrence.
FAILURE_KINDS = (
    "transient",
    "permanent",
    "auth",
    "sidecar",
    "internal",
    "unreachable",
    "download",
)

HealthCheck = Callable[[], tuple[bool, str]]


class _ProcessCollector(ProcessCollector):
    """prometheus_client's process metrics, also under systemd's ``ProcSubset=pid``.

    The stock collector reads the boot time from /proc/stat and reports nothing at all when
    that file is hidden, as it is in the hardened unit; two clocks give the same number.
    """

    def _boot_time(self) -> float:
        clock = getattr(time, "CLOCK_BOOTTIME", None)  # Linux only
        if clock is None:
            # prometheus_client's own method carries no annotations.
            return float(super()._boot_time() or 0)  # type: ignore[no-untyped-call]
        return time.time() - time.clock_gettime(clock)


class Metrics:
    """Counters, gauges and a histogram describing what the daemon does."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Memory, CPU and open files: the first things to look at in a daemon that runs for months.
        _ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.uploads = Counter(
            "heygen_watcher_uploads_total",
            "Files uploaded to HeyGen, by detected content type.",
            ["content_type"],
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "heygen_watcher_upload_bytes_total",
            "Bytes of files uploaded to HeyGen.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "heygen_watcher_rejected_total",
            "Files refused before upload, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.failures = Counter(
            "heygen_watcher_failures_total",
            "Upload or sidecar failures, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "heygen_watcher_queue_depth",
            "Files in the journal, by state.",
            ["state"],
            registry=self.registry,
        )
        self.upload_seconds = Histogram(
            "heygen_watcher_upload_seconds",
            "Time taken by one upload, from the first request to the asset id.",
            buckets=UPLOAD_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.videos = Counter(
            "heygen_watcher_videos_total",
            "Video generations, by final status.",
            ["status"],
            registry=self.registry,
        )
        self.api_unreachable = Gauge(
            "heygen_watcher_api_unreachable",
            "1 while the API or its storage does not answer (uploads are held), else 0.",
            registry=self.registry,
        )
        self.api_unreachable_since = Gauge(
            "heygen_watcher_api_unreachable_since_seconds",
            "When the current outage began (Unix time); 0 when the API answers.",
            registry=self.registry,
        )
        self.conversions = Counter(
            "heygen_watcher_conversions_total",
            "Files converted before upload, by result (remux, transcode, image, refused, failed).",
            ["result"],
            registry=self.registry,
        )
        self.conversion_seconds = Counter(
            "heygen_watcher_conversion_seconds_total",
            "Seconds spent converting files (by the converter, whatever the result).",
            registry=self.registry,
        )
        self.conversions_running = Gauge(
            "heygen_watcher_conversions_in_progress",
            "Conversions running now.",
            registry=self.registry,
        )
        self.notifications = Counter(
            "heygen_watcher_notifications_total",
            "Notification delivery attempts, by result (delivered, retried, dead).",
            ["result"],
            registry=self.registry,
        )
        for kind in FAILURE_KINDS:
            self.failures.labels(kind=kind)
        self._states: set[str] = set()
        self._states_lock = threading.Lock()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "uploaded": self._uploaded,
            "rejected": lambda d: self.rejected.labels(reason=_label(d, "reason")).inc(),
            "failure": lambda d: self.failures.labels(kind=_label(d, "kind")).inc(),
            "video": lambda d: self.videos.labels(status=_label(d, "status")).inc(),
            "api": self._reachability,
            "converted": self._converted,
            "notify": lambda d: self.notifications.labels(result=_label(d, "result")).inc(),
            "converting": lambda d: self.conversions_running.set(int(d.get("running", 0))),
        }

    def on_event(self, kind: str, details: dict[str, Any]) -> None:
        """Record one pipeline event. Never raises: metrics must not break an upload."""
        handler = self._handlers.get(kind)
        if handler is None:
            return  # "skipped" and anything newer: not counted
        try:
            handler(details)
        except (AttributeError, TypeError, ValueError) as error:
            log.debug("ignoring malformed %s event %r: %s", kind, details, error)

    def _uploaded(self, details: dict[str, Any]) -> None:
        self.uploads.labels(content_type=_label(details, "content_type")).inc()
        size = details.get("bytes")
        if size is not None:
            self.upload_bytes.inc(max(0, int(size)))
        seconds = details.get("seconds")
        if seconds is not None:
            self.upload_seconds.observe(max(0.0, float(seconds)))

    def _converted(self, details: dict[str, Any]) -> None:
        self.conversions.labels(result=_label(details, "result")).inc()
        self.conversion_seconds.inc(max(0.0, float(details.get("seconds") or 0.0)))

    def _reachability(self, details: dict[str, Any]) -> None:
        down = bool(details.get("unreachable"))
        self.api_unreachable.set(1 if down else 0)
        self.api_unreachable_since.set(float(details.get("since") or 0) if down else 0)

    def set_queue_depth(self, counts: dict[str, int]) -> None:
        """Set the gauge for every state given; states seen before but absent now drop to 0."""
        with self._states_lock:
            for state in self._states - counts.keys():
                self.queue_depth.labels(state=state).set(0)
            for state, count in counts.items():
                self.queue_depth.labels(state=state).set(count)
            self._states |= counts.keys()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _label(details: dict[str, Any], key: str) -> str:
    value = details.get(key)
    return str(value) if value not in (None, "") else "unknown"


# -- the HTTP server ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow scraper must never hold up shutdown

    def __init__(
        self, address: tuple[str, int], family: int, metrics: Metrics, health: HealthCheck
    ) -> None:
        self.address_family = family
        self.metrics = metrics
        self.health = health
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can hang for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that connects and says nothing gives up its thread
    server_version = "heygen-watcher"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.metrics.render(), CONTENT_TYPE, head)
        elif path == "/healthz":
            healthy, reason = self._health()
            body = b"ok\n" if healthy else f"{reason.rstrip()}\n".encode()
            self._send(200 if healthy else 503, body, "text/plain; charset=utf-8", head)
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8", head)

    def _health(self) -> tuple[bool, str]:
        try:
            healthy, reason = self.server.health()
        except Exception as error:
            log.debug("health check raised", exc_info=True)
            return False, f"health check failed: {error}"
        return bool(healthy), reason or "unhealthy"

    def _send(self, status: int, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # One line per scrape would flood the journal; keep it for debugging only.
        log.debug("metrics http: " + format, *args)


def _family_of(host: str, port: int) -> int:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve {host!r}: {error.strerror}") from None
    return infos[0][0]


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` on ``listen`` from a background thread."""

    def __init__(self, listen: str, metrics: Metrics, health: HealthCheck) -> None:
        self.listen = parse_listen(listen)
        self.metrics = metrics
        self.health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("the metrics server is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the metrics server is already running")
        host, port = self.listen
        self._server = _Server((host, port), _family_of(host, port), self.metrics, self.health)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        log.info("serving metrics on http://%s/metrics", _url_host(*self.address))

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None


def _url_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
