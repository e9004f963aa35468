"""Retries as a transport concern: one policy, applied around single attempts.

Backoff is exponential with ±25% jitter (so a crowd of workers does not retry in lock-step),
capped, and bounded in attempts. A server's ``Retry-After`` wins over the backoff but is clamped,
so a broken proxy asking for a day's pause cannot wedge the daemon.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from watcher.heygen.errors import ApiError, RateLimited, ResponseLost, TransientError, is_outage
from watcher.heygen.reachability import Reachability
from watcher.heygen.throttle import Throttle

log = logging.getLogger(__name__)

T = TypeVar("T")
_RANDOM = random.Random()
# The file this thread's requests are for, named in the retry lines: without it, two workers
# retrying `POST /v1/asset` for two files print one identical line twice.
_SUBJECT: ContextVar[str | None] = ContextVar("heygen_request_subject", default=None)


@contextmanager
def requests_for(subject: str) -> Iterator[None]:
    """Name ``subject`` (a file's path) in the retry lines of the requests made inside."""
    token = _SUBJECT.set(subject)
    try:
        yield
    finally:
        _SUBJECT.reset(token)


def _subject_fields() -> dict[str, Any]:
    subject = _SUBJECT.get()
    return {"file": subject} if subject is not None else {}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0
    max_retry_after_seconds: float = 300.0
    jitter_fraction: float = 0.25

    def backoff_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        raw = min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** (attempt - 1))
        spread = raw * self.jitter_fraction
        jitter = (rng or _RANDOM).uniform(-spread, spread)
        return max(0.0, raw + jitter)

    def delay_for(self, error: ApiError, attempt: int) -> float:
        if isinstance(error, RateLimited) and error.retry_after_seconds is not None:
            return min(error.retry_after_seconds, self.max_retry_after_seconds)
        return self.backoff_seconds(attempt)


def is_retryable(error: ApiError) -> bool:
    # A lost answer to a request that must not be replayed is the caller's decision.
    return isinstance(error, (TransientError, RateLimited)) and not isinstance(error, ResponseLost)


def with_retries(
    attempt_once: Callable[[], T],
    policy: RetryPolicy,
    throttle: Throttle,
    *,
    what: str,
    retryable: Callable[[ApiError], bool] = is_retryable,
    reachability: Reachability | None = None,
) -> T:
    """Run ``attempt_once`` until it succeeds, a non-retryable error occurs or attempts run out.

    Waiting goes through the shared `Throttle`: a 429 pauses every caller, not just this one,
    and a shutdown wakes every waiter at once. Once the service is known to be unreachable,
    an outage-like failure is not retried here (nor slept on): the caller holds its work until
    a probe finds the service back.
    """
    attempt = 1
    while True:
        try:
            return attempt_once()
        except ApiError as error:
            if not retryable(error) or attempt >= policy.max_attempts:
                raise
            if reachability is not None and is_outage(error) and reachability.down:
                raise
            delay = policy.delay_for(error, attempt)
            if isinstance(error, RateLimited):
                throttle.pause_for(delay, reason=str(error))
            # One line per quick retry, counting the try about to be made: these tries start
            # from one again at each of the file's own attempts (see the pipeline's retries).
            failure = str(error)
            if not failure.startswith(what):  # network errors name the request already
                failure = f"{what} failed ({failure})"
            log.info(
                "%s; trying it again in %.2fs (try %d of %d)",
                failure,
                delay,
                attempt + 1,
                policy.max_attempts,
                extra=_subject_fields(),
            )
            if reachability is None:
                throttle.sleep(delay)
            elif _sleep_unless_down(delay, throttle, reachability) and is_outage(error):
                raise error
            attempt += 1


# A shutdown is noticed within this long while a retry waits on the reachability condition.
_SLICE_SECONDS = 0.5


def _sleep_unless_down(seconds: float, throttle: Throttle, reachability: Reachability) -> bool:
    """Sleep like `Throttle.sleep`, but return True early once an outage is declared."""
    throttle.sleep(0)  # the watchdog's "a deliberate wait", and a shutdown check
    left = seconds
    while left > 0:
        step = min(_SLICE_SECONDS, left)
        if reachability.wait_until_down(step):
            return True
        throttle.sleep(0)
        left -= step
    return False
