"""HTTP plumbing shared by the API and storage listeners.

Every request goes through one pipeline: record it, add the configured latency, refuse it if
its key is over the rate limit, apply a queued fault, let the app answer, then write (or
deliberately lose) the response.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from watcher.sandbox.exchange import Exchange, Response, header_dict
from watcher.sandbox.faults import Fault
from watcher.sandbox.state import SandboxState

log = logging.getLogger(__name__)

# Small leftover bodies are read before answering so the connection can be reused; larger ones
# are drained after answering (clients like requests read the answer only once they sent it
# all), up to a limit past which the connection is simply closed, as S3 does.
KEEPALIVE_DRAIN_BYTES = 1 << 20
CLOSING_DRAIN_BYTES = 64 << 20
DRAIN_SECONDS = 2.0
# How often an idle listener checks whether it should stop.
POLL_SECONDS = 0.02


class App(Protocol):
    name: str

    def admin(self, exchange: Exchange) -> Response | None: ...

    def rate_key(self, exchange: Exchange) -> str | None: ...

    def handle(self, exchange: Exchange) -> Response: ...

    def fault_response(self, exchange: Exchange, fault: Fault) -> Response: ...

    def internal_error(self, exchange: Exchange) -> Response: ...


class Pipeline:
    def __init__(self, app: App, state: SandboxState, stopping: threading.Event) -> None:
        self.app = app
        self.state = state
        self.stopping = stopping

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        exchange = Exchange(handler, self.app.name)
        admin = self.app.admin(exchange)
        if admin is not None:
            answer(handler, exchange, admin)
            return
        seen = self.state.record_arrival(
            exchange.server,
            exchange.method,
            exchange.path,
            exchange.query,
            header_dict(exchange.headers),
        )
        self.pause(self.state.settings.latency_seconds)
        refusal = self._over_rate_limit(exchange)
        if refusal is not None:
            self.state.record_outcome(seen, refusal.status, exchange.body_read, "rate_limit")
            answer(handler, exchange, refusal)
            return
        fault = self.state.take_fault(exchange.server, exchange.method, exchange.path)
        response = self._respond(exchange, fault)
        # Recorded before the client can see the outcome, so it may rely on the record.
        self.state.record_outcome(
            seen,
            response.status if response else 0,
            exchange.body_read,
            fault.effect if fault else None,
        )
        if response is not None and not (fault is not None and fault.drop_response):
            answer(handler, exchange, response)
            return
        abort(handler)
        if response is not None and response.file is not None:
            response.file.close()

    def _over_rate_limit(self, exchange: Exchange) -> Response | None:
        """The 429 for a keyed request over its key's rate limit; None when within it."""
        key = self.app.rate_key(exchange)
        settings = self.state.settings
        if key is None or settings.rate_limit_per_second <= 0:
            return None
        wait = self.state.rate_limiter.take(
            key, settings.rate_limit_per_second, settings.rate_limit_burst
        )
        if wait is None:
            return None
        return self.app.fault_response(exchange, Fault(status=429, retry_after=str(wait)))

    def pause(self, seconds: float) -> None:
        # An Event wait rather than sleep, so stopping the sandbox is never held up by it.
        if seconds > 0:
            self.stopping.wait(seconds)

    def _respond(self, exchange: Exchange, fault: Fault | None) -> Response | None:
        """The response to send (or to lose); None when the connection is reset unanswered."""
        if fault is None:
            return self._perform(exchange)
        self.pause(fault.delay_seconds)
        if fault.reset:
            return None
        if fault.status is not None:
            if fault.after_effect:
                # The request takes effect; only its answer is replaced by the fault's.
                performed = self._perform(exchange)
                if performed.file is not None:
                    performed.file.close()
            return self.app.fault_response(exchange, fault)
        return self._perform(exchange)

    def _perform(self, exchange: Exchange) -> Response:
        try:
            return self.app.handle(exchange)
        except Exception:
            log.exception("%s failed on %s %s", self.app.name, exchange.method, exchange.path)
            return self.app.internal_error(exchange)


def answer(handler: BaseHTTPRequestHandler, exchange: Exchange, response: Response) -> None:
    """Write the response, then leave the connection in a state fit for the next request."""
    if exchange.body_pending and exchange.body_known:
        exchange.discard_body(KEEPALIVE_DRAIN_BYTES, DRAIN_SECONDS)
    closing = exchange.body_pending or exchange.unframed
    try:
        write_response(handler, exchange, response, closing)
    except OSError:
        handler.close_connection = True
        return
    finally:
        if response.file is not None:
            response.file.close()
    if closing:
        exchange.discard_body(CLOSING_DRAIN_BYTES, DRAIN_SECONDS)
        handler.close_connection = True


def write_response(
    handler: BaseHTTPRequestHandler, exchange: Exchange, response: Response, closing: bool
) -> None:
    handler.send_response(response.status)
    if response.content_type:
        handler.send_header("Content-Type", response.content_type)
    length = os.fstat(response.file.fileno()).st_size if response.file else len(response.body)
    handler.send_header("Content-Length", str(length))
    for name, value in response.headers.items():
        handler.send_header(name, value)
    if closing:
        handler.send_header("Connection", "close")
    handler.end_headers()
    if exchange.method == "HEAD":
        return
    if response.file is not None:
        handler.connection.sendfile(response.file, count=length)
    elif response.body:
        handler.wfile.write(response.body)


def abort(handler: BaseHTTPRequestHandler) -> None:
    """Reset the connection (RST, not FIN) without answering: a lost response."""
    handler.close_connection = True
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Detach so the close happens now: the handler's file objects would otherwise keep
        # the socket open, and the server's shutdown(SHUT_WR) would send a FIN first.
        os.close(sock.detach())
    except OSError:
        pass


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Idle keep-alive connections and stalled uploads give their thread back after this.
    timeout = 120
    server: SandboxHTTPServer

    # Set per request: the client sent "Expect: 100-continue" and waits before sending its body.
    continue_requested = False

    def parse_request(self) -> bool:
        self.continue_requested = False
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        # Deferred until a route reads the body, so refusals made from the headers alone
        # reach the client before it sends the body, as S3 does.
        self.continue_requested = True
        return True

    def do_GET(self) -> None:
        self.server.pipeline.serve(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the sandbox records requests itself, and benchmarks must not pay for I/O."""


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SandboxHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-request is routine here (tests reset connections on purpose).
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Listener:
    """One HTTP server running on its own thread."""

    def __init__(self, host: str, port: int, pipeline: Pipeline) -> None:
        self.server = SandboxHTTPServer((host, port), pipeline)
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            name=f"sandbox-{pipeline.app.name}",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return (host.decode() if isinstance(host, bytes) else str(host), int(port))

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{host_text}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self._thread.join()
