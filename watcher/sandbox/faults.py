"""Fault injection: what may go wrong with the next matching requests."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from typing import Any

SERVERS = ("api", "storage", "upload", "*")


@dataclass(frozen=True)
class Fault:
    """A fault applied to the next ``count`` requests matching method, path prefix and server.

    Effects: ``delay_seconds`` sleeps first; ``status`` answers with that status (and the
    endpoint's error envelope, or ``body``) without performing the request, or, with
    ``after_effect``, after performing it (a proxy's 502 once the video was created); ``reset``
    aborts the connection without performing it; ``drop_response`` performs it and then aborts
    the connection instead of answering (a lost response).

    ``for_seconds`` turns the fault into an outage of that length: it applies to every matching
    request until that many seconds after it was injected, and ``count`` is ignored (e.g. a
    storage answering 503 for a minute).
    """

    method: str = "*"
    path_prefix: str = "/"
    server: str = "*"
    status: int | None = None
    retry_after: str | None = None
    delay_seconds: float = 0.0
    reset: bool = False
    drop_response: bool = False
    count: int = 1
    body: str | None = None
    after_effect: bool = False
    for_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise ValueError(f"server must be one of {SERVERS}, not {self.server!r}")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.for_seconds is not None and self.for_seconds <= 0:
            raise ValueError("for_seconds must be positive")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, not {self.status}")
        if self.after_effect and self.status is None:
            raise ValueError("after_effect needs a status to answer with")

    def matches(self, server: str, method: str, path: str) -> bool:
        return (
            self.server in ("*", server)
            and self.method in ("*", method.upper())
            and path.startswith(self.path_prefix)
        )

    @property
    def effect(self) -> str:
        """The effect's name, as recorded in ``SeenRequest.fault``."""
        if self.reset:
            return "reset"
        if self.drop_response:
            return "drop_response"
        if self.status is not None:
            return "status_after_effect" if self.after_effect else "status"
        return "delay"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from an admin request body, refusing unknown fields."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


@dataclass
class _Queued:
    fault: Fault
    left: int
    until: float | None = None  # monotonic end of a ``for_seconds`` fault


class FaultQueue:
    """Queued faults with their remaining counts; the caller provides the locking."""

    def __init__(self) -> None:
        self._queued: list[_Queued] = []

    def add(self, fault: Fault) -> None:
        normalized = replace(fault, method=fault.method.upper())
        until = None if fault.for_seconds is None else time.monotonic() + fault.for_seconds
        self._queued.append(_Queued(normalized, normalized.count, until))

    def clear(self) -> None:
        self._queued.clear()

    def take(self, server: str, method: str, path: str) -> Fault | None:
        """Consume one use of the first matching fault."""
        now = time.monotonic()
        self._queued = [q for q in self._queued if q.until is None or now < q.until]
        for queued in self._queued:
            if queued.fault.matches(server, method, path):
                if queued.until is not None:
                    return queued.fault
                queued.left -= 1
                if queued.left == 0:
                    self._queued.remove(queued)
                return queued.fault
        return None
