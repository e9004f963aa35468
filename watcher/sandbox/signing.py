"""HMAC-signed, expiring storage URLs, shaped like S3 query-string authentication.

The signature covers the method, the path, the issue time, the lifetime and the values of the
signed headers; the storage recomputes it from what it expects for the upload slot, so a changed
query string or a slot that no longer exists fails the check.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlencode

DATE = "X-Amz-Date"
EXPIRES = "X-Amz-Expires"
SIGNED_HEADERS = "X-Amz-SignedHeaders"
SIGNATURE = "X-Amz-Signature"
ALGORITHM = "X-Amz-Algorithm"
AUTH_PARAMS = (DATE, EXPIRES, SIGNED_HEADERS, SIGNATURE)


class Verdict(enum.Enum):
    VALID = "valid"
    UNSIGNED = "unsigned"
    MISMATCH = "mismatch"
    EXPIRED = "expired"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Signer:
    """Issues and checks presigned URLs with a secret that lives as long as the sandbox."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._expired_through_ms = 0
        self._last_issued_ms = 0

    def sign(self, method: str, path: str, ttl_seconds: float, signed: Mapping[str, str]) -> str:
        """Return the query string (without ``?``) authorizing ``method path``."""
        issued_ms = self._issue_time_ms()
        names = ";".join(sorted(signed))
        expires = f"{ttl_seconds:g}"
        params = {
            ALGORITHM: "SANDBOX-HMAC-SHA256",
            DATE: str(issued_ms),
            EXPIRES: expires,
            SIGNED_HEADERS: names,
            SIGNATURE: self._signature(method, path, str(issued_ms), expires, names, signed),
        }
        return urlencode(params)

    def verify(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        signed: Mapping[str, str],
    ) -> Verdict:
        """Check a presigned request against the headers the slot was signed with."""
        values = {name: query.get(name, []) for name in AUTH_PARAMS}
        if any(len(found) != 1 for found in values.values()):
            return Verdict.UNSIGNED
        date, expires, names, signature = (values[name][0] for name in AUTH_PARAMS)
        expected = self._signature(method, path, date, expires, names, signed)
        if names != ";".join(sorted(signed)) or not hmac.compare_digest(signature, expected):
            return Verdict.MISMATCH
        if self._expired(int(date), float(expires)):
            return Verdict.EXPIRED
        return Verdict.VALID

    def expire_all(self) -> None:
        """Make every URL issued so far count as expired."""
        with self._lock:
            self._expired_through_ms = max(self._last_issued_ms, _now_ms())

    def _issue_time_ms(self) -> int:
        # Strictly after the last expire_all(), so a URL issued right after it stays valid.
        with self._lock:
            issued = max(_now_ms(), self._expired_through_ms + 1)
            self._last_issued_ms = max(self._last_issued_ms, issued)
            return issued

    def _expired(self, issued_ms: int, ttl_seconds: float) -> bool:
        with self._lock:
            revoked = issued_ms <= self._expired_through_ms
        return revoked or _now_ms() > issued_ms + ttl_seconds * 1000

    def _signature(
        self,
        method: str,
        path: str,
        date: str,
        expires: str,
        names: str,
        signed: Mapping[str, str],
    ) -> str:
        lines = [method, path, date, expires, names]
        lines += [f"{name}:{signed[name]}" for name in sorted(signed)]
        message = "\n".join(lines).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
