"""Turn HeyGen's three response envelopes, and S3-style storage answers, into data or errors.

- v1/v2: ``{"error": "<message>" | null, "data": ...}``
- older v1: ``{"code": 100, "data": ..., "message": ...}`` where 100 means success
- v3: ``{"data": ...}`` or ``{"error": {"code", "message", "param"?}}``
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Protocol

from watcher.heygen.errors import (
    ApiError,
    AuthError,
    Forbidden,
    PermanentError,
    QuotaError,
    RateLimited,
    SlotExpired,
    TransientError,
)


class HttpAnswer(Protocol):
    """What the parsers read of an answer: a `watcher.heygen.transport.Answer`, or a
    `requests.Response` (downloads)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


_LEGACY_SUCCESS_CODE = 100
_MAX_MESSAGE_CHARS = 300


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"


def _json_or_none(response: HttpAnswer) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_from_body(body: Any) -> tuple[str | None, str | None]:
    """(code, message) of an error envelope, or (None, None) when the body reports success."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message") or code or "unknown error"
        param = error.get("param")
        if param:
            message = f"{message} (param: {param})"
        return (str(code) if code is not None else None), str(message)
    if isinstance(error, str) and error:
        return None, error
    legacy_code = body.get("code")
    if isinstance(legacy_code, int) and legacy_code != _LEGACY_SUCCESS_CODE:
        return str(legacy_code), str(body.get("message") or f"error code {legacy_code}")
    return None, None


def error_for_status(
    status: int, message: str, *, code: str | None = None, retry_after: str | None = None
) -> ApiError:
    """The typed error an API answer with this status stands for."""
    if status == 401:
        return AuthError(message, status=status, code=code)
    if status == 403:
        return Forbidden(message, status=status, code=code)
    if status == 402:
        return QuotaError(message, status=status, code=code)
    return _by_retry_class(status, message, code, retry_after)


def _by_retry_class(
    status: int, message: str, code: str | None, retry_after: str | None
) -> ApiError:
    """What API and storage answers share: 429 slows down, 408 and 5xx are worth another
    try, any other refusal is final."""
    if status == 429:
        return RateLimited(
            message,
            status=status,
            code=code,
            retry_after_seconds=parse_retry_after(retry_after),
        )
    if status == 408 or status >= 500:
        return TransientError(message, status=status, code=code)
    return PermanentError(message, status=status, code=code)


def parse_api_response(response: HttpAnswer) -> Any:
    """The ``data`` of a successful API answer, or raise the matching `ApiError`."""
    body = _json_or_none(response)
    code, message = _error_from_body(body)
    status = response.status_code
    if not 200 <= status < 300:
        if message is None:
            message = _shorten(response.text) or response.reason or "no message"
        raise error_for_status(
            status, message, code=code, retry_after=response.headers.get("Retry-After")
        )
    if message is not None:
        # Some endpoints answer 200 with an error in the envelope.
        raise PermanentError(message, status=status, code=code)
    if not isinstance(body, dict) or "data" not in body:
        got = _shorten(response.text)
        raise PermanentError(
            f"malformed response: expected a JSON object with 'data', got {got!r}", status=status
        )
    return body["data"]


_S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def raise_for_storage(response: HttpAnswer) -> None:
    """Raise the matching error for a failed PUT/GET to a presigned storage URL."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = response.text
    code_match = _S3_CODE.search(text)
    message_match = _S3_MESSAGE.search(text)
    code = code_match.group(1) if code_match else None
    message = message_match.group(1) if message_match else (_shorten(text) or response.reason)
    message = f"storage refused the upload: {code + ': ' if code else ''}{message}"
    if status == 403:
        # Presigned URLs answer 403 once they have expired; only a fresh slot helps.
        raise SlotExpired(message, status=status, code=code)
    raise _by_retry_class(status, message, code, response.headers.get("Retry-After"))


def dumps_json(body: Any) -> bytes:
    """A JSON request body, byte for byte as requests' ``json=`` made it."""
    return json.dumps(body, allow_nan=False).encode("utf-8")


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
