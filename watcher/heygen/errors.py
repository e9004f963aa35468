"""One exception hierarchy for everything the API or the storage host can answer.

Callers catch at the level they care about: the pipeline treats `TransientError` and
`RateLimited` as "try again later", `AuthError` as "pause everything", `QuotaError` as "pause
video generation", and `PermanentError` (which includes `Forbidden`) as "this file will not go
up as it is".
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Base of every error raised by the HeyGen client."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        # Set for failures of a presigned storage URL: where a reachability probe should look.
        self.storage_url: str | None = None

    def __str__(self) -> str:
        prefix = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{prefix}{self.message}"


class AuthError(ApiError):
    """401 from the API host: the key is wrong or revoked; nothing will work until it changes."""


class QuotaError(ApiError):
    """402: the account has no credits left."""


class RateLimited(ApiError):
    """429: slow down; `retry_after_seconds` is the server's advice, if it gave one."""

    def __init__(
        self, message: str, *, retry_after_seconds: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_seconds = retry_after_seconds


class TransientError(ApiError):
    """5xx, 408, connection resets, timeouts, expired presigned URLs: worth another try."""


def is_outage(error: Exception) -> bool:
    """A failure that says "the service does not answer" rather than anything about the
    request: no connection, a timeout, a 5xx or 408 (from the API or from storage)."""
    return isinstance(error, TransientError) and not isinstance(error, SlotExpired)


class SlotExpired(TransientError):
    """The presigned storage URL is no longer valid; a fresh upload slot is needed."""


class PermanentError(ApiError):
    """Any other 4xx, or an answer we cannot make sense of: retrying will not help."""


class Forbidden(PermanentError):
    """403 from the API host: the key is valid but this request is not permitted.

    HeyGen documents it as a refusal of the request, not of the key ("re-authenticating will
    not help"): the file or video fails with the reason; other requests carry on.
    """


class FileTooLarge(PermanentError):
    """Refused locally before sending anything (e.g. v3-multipart's 32 MB limit)."""


class UnsupportedType(PermanentError):
    """Refused locally before sending anything: the protocol does not take this type."""


class ResponseLost(TransientError):
    """The request may have been carried out but its answer never arrived.

    Raised instead of retrying for requests that are not safe to replay blindly (a video
    generation costs money): the caller decides whether and when to try again.
    """
