"""One HTTP request as the routes see it, and the response they give back.

Bodies are never read implicitly: a route decides whether and how (whole, streamed in 1 MiB
chunks, or not at all), and the server drains or abandons what is left after answering.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

CHUNK_BYTES = 1 << 20
MAX_CHUNK_LINE = 4096


class BodyError(Exception):
    """The body cannot be read as the route needs: ``kind`` says why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    file: BinaryIO | None = None


def header_dict(headers: Message) -> dict[str, str]:
    """Headers as received (original casing), repeated names joined like HTTP allows."""
    merged: dict[str, str] = {}
    for name, value in headers.items():
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged


class Exchange:
    def __init__(self, handler: BaseHTTPRequestHandler, server: str) -> None:
        split = urlsplit(handler.path)
        self.server = server
        self.method = handler.command
        self.path = split.path
        self.query = split.query
        self.params = parse_qs(split.query, keep_blank_values=True)
        self.headers = handler.headers
        self._handler = handler
        self.body_read = 0
        self._body_finished = False
        self._continue_pending = bool(getattr(handler, "continue_requested", False))
        # Set when a route needed a body whose end cannot be found: the connection must close.
        self.unframed = False
        self._content_length = self._parse_content_length()

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.header("Transfer-Encoding") or "").lower()

    @property
    def content_length(self) -> int | None:
        """The declared length; raises BodyError when it is not a single valid number."""
        if isinstance(self._content_length, BodyError):
            raise self._content_length
        return self._content_length

    @property
    def body_pending(self) -> bool:
        """Whether body bytes the client sent (or will send) are still unread."""
        if self._body_finished:
            return False
        if self.chunked or isinstance(self._content_length, BodyError):
            return True
        return (self._content_length or 0) > self.body_read

    @property
    def body_known(self) -> bool:
        """Whether the end of the body can be found (known length, or chunked framing)."""
        return self.chunked or isinstance(self._content_length, int)

    def read_body(self, limit: int) -> bytes:
        """Read a whole body of at most ``limit`` bytes into memory."""
        length = self.required_length()
        if length > limit:
            raise BodyError("too_large", f"body of {length} bytes exceeds {limit}")
        self._send_continue()
        data = self._handler.rfile.read(length)
        self.body_read = len(data)
        if len(data) != length:
            raise BodyError("incomplete", "the client sent fewer bytes than Content-Length")
        self._body_finished = True
        return data

    def read_into(self, view: memoryview) -> int:
        """Read the next part of a Content-Length body, at most ``len(view)`` bytes."""
        left = self.required_length() - self.body_read
        self._send_continue()
        got = self._handler.rfile.readinto(view[: min(len(view), left)]) if left else 0
        if left and not got:
            raise BodyError("incomplete", "the client sent fewer bytes than Content-Length")
        self.body_read += got
        self._body_finished = self.body_read == self._content_length
        return got

    def required_length(self) -> int:
        if self.chunked:
            raise BodyError("chunked", "Transfer-Encoding: chunked is not supported")
        length = self.content_length
        if length is None:
            self.unframed = True
            raise BodyError("missing_length", "Content-Length is required")
        return length

    def discard_body(self, cap_bytes: int, seconds: float) -> bool:
        """Read and drop what is left of the body, within limits; True when all of it went."""
        if not self.body_pending or not self.body_known or self._continue_pending:
            # A client still waiting for "100 Continue" sends nothing: there is nothing to read.
            return not self.body_pending
        deadline = time.monotonic() + seconds
        try:
            if self.chunked:
                self._discard_chunked(cap_bytes, deadline)
            else:
                self._discard_exact(cap_bytes, deadline)
        except (OSError, ValueError):
            return False
        finally:
            # The connection may serve further requests: give it back its idle timeout.
            with contextlib.suppress(OSError):
                self._handler.connection.settimeout(self._handler.timeout)
        return not self.body_pending

    def _discard_exact(self, cap_bytes: int, deadline: float) -> None:
        declared = self._content_length if isinstance(self._content_length, int) else 0
        left = declared - self.body_read
        if left > cap_bytes:
            return
        while left > 0:
            self._set_timeout(deadline)
            got = len(self._handler.rfile.read(min(left, CHUNK_BYTES)))
            if not got:
                return
            left -= got
            self.body_read += got
        self._body_finished = True

    def _discard_chunked(self, cap_bytes: int, deadline: float) -> None:
        rfile = self._handler.rfile
        while self.body_read <= cap_bytes:
            self._set_timeout(deadline)
            size = int(rfile.readline(MAX_CHUNK_LINE).split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline(MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                    self._set_timeout(deadline)
                self._body_finished = True
                return
            self._skip(size + 2, deadline)
            self.body_read += size

    def _skip(self, count: int, deadline: float) -> None:
        while count > 0:
            self._set_timeout(deadline)
            got = len(self._handler.rfile.read(min(count, CHUNK_BYTES)))
            if not got:
                raise ValueError("connection closed inside a chunk")
            count -= got

    def _send_continue(self) -> None:
        if self._continue_pending:
            self._continue_pending = False
            self._handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _set_timeout(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no time left to drain the body")
        self._handler.connection.settimeout(left)

    def _parse_content_length(self) -> int | BodyError | None:
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return None
        distinct = {value.strip() for value in values}
        if len(distinct) != 1 or not _is_decimal(next(iter(distinct))):
            return BodyError("bad_length", "Content-Length must be one non-negative integer")
        return int(distinct.pop())


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()
