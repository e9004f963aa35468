"""Finding how hard HeyGen may be pushed, since it publishes no limits.

Two controllers in the manner of TCP's congestion control (additive increase, multiplicative
decrease), fed with the outcome of every request to HeyGen's keyed hosts:

- `ConcurrencyLimit`: how many uploads may be in flight. It starts at `START_CONCURRENCY` and,
  while answers come back as fast as ever and nothing is refused, grows by one per answer
  (doubling every round trip) until the first cut, then by one per round trip. A 429 halves it;
  a latency jump (recent answers well above the best seen) cuts it by a fifth. It never leaves
  1 … `maximum` (``api.concurrency``).
- `RateLimit`: requests per second. There is none until HeyGen refuses one; a 429 sets it to
  80% of the rate HeyGen was accepting, and every accepted request raises it a little (a quarter
  in about a hundred requests), so it probes back up and settles just under the real limit.
  After `forget_seconds` without a refusal it is dropped.

Both take a clock, so they are tested without sleeping; neither locks (`Throttle` owns them and
calls them under its lock).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]

# The old fixed default: polite enough for any account, and a start the doubling leaves
# behind within a few round trips when more is welcome.
START_CONCURRENCY = 4


@dataclass
class ConcurrencyLimit:
    maximum: int
    clock: Clock = time.monotonic
    start: int = START_CONCURRENCY
    refused_factor: float = 0.5
    latency_factor: float = 0.8
    # Recent latency this many times the best seen is a jump …
    latency_tolerance: float = 2.0
    # … if it is also this much slower: jitter of a few milliseconds on a fast link is not.
    min_jump_seconds: float = 0.025
    # Cuts are at least this far apart (and two recent latencies): the answers to requests
    # sent before a cut say nothing about the new limit.
    min_cut_spacing_seconds: float = 0.1
    _limit: float = field(init=False)
    _threshold: float = field(init=False)
    _best: float | None = field(init=False, default=None)
    _recent: float | None = field(init=False, default=None)
    _last_cut: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError("maximum must be at least 1")
        self._limit = float(max(1, min(self.start, self.maximum)))
        self._threshold = math.inf  # doubling until the first cut

    @property
    def limit(self) -> int:
        return max(1, min(self.maximum, int(self._limit)))

    @property
    def recent_latency(self) -> float | None:
        return self._recent

    def on_success(self, latency: float | None, saturated: bool) -> None:
        """An answer that was not a refusal. ``latency`` is None for requests whose time says
        nothing about load (a body of unknown size); ``saturated`` tells that every slot was
        taken, the only time more slots could have helped."""
        if latency is not None:
            self._observe(latency)
            if self._jumped(latency):
                self._cut(self.latency_factor)
                return
        if not saturated:
            return
        if self._limit < self._threshold:
            self._limit += 1.0
        else:
            self._limit += 1.0 / self._limit
        self._limit = min(self._limit, float(self.maximum))

    def on_refused(self) -> None:
        self._cut(self.refused_factor)

    def _observe(self, latency: float) -> None:
        if self._best is None or latency < self._best:
            self._best = latency
        else:
            # Slowly forget a best that no longer holds (the route to HeyGen changed).
            self._best += (latency - self._best) * 0.01
        if self._recent is None:
            self._recent = latency
        else:
            self._recent += (latency - self._recent) * 0.2

    def _jumped(self, latency: float) -> bool:
        """Recent answers, this one included, are well above the best seen (this one too:
        the average lags behind a latency that fell)."""
        if self._best is None or self._recent is None:
            return False
        return all(
            value > self._best * self.latency_tolerance
            and value - self._best > self.min_jump_seconds
            for value in (latency, self._recent)
        )

    def _cut(self, factor: float) -> None:
        now = self.clock()
        spacing = max(self.min_cut_spacing_seconds, 2 * (self._recent or 0.0))
        if now - self._last_cut < spacing:
            return
        self._last_cut = now
        self._limit = max(1.0, self._limit * factor)
        self._threshold = self._limit


@dataclass
class RateLimit:
    clock: Clock = time.monotonic
    decrease_factor: float = 0.8
    # Each accepted request raises the rate by this fraction while the rate is what holds
    # requests back: from a cut back to where it was cut takes about ninety requests, so the
    # one or two refusals of an episode stay near 2% whatever HeyGen's limit is.
    increase_per_request: float = 0.0025
    # How far back the rate HeyGen accepted is counted at the first refusal. Counted over the
    # whole window even just after a start: an estimate too low is recovered by probing, one
    # too high costs another refusal.
    window_seconds: float = 1.0
    # At the first refusal, assume at least this many were accepted in the window: one
    # refusal seen right after a start says little, and a rate near zero would take ages to
    # probe back up.
    min_first_accepted: int = 4
    # Refusals this close together are one episode (requests already in flight).
    cooldown_seconds: float = 1.0
    forget_seconds: float = 600.0
    _rate: float | None = field(init=False, default=None)
    _accepted: deque[float] = field(init=False, default_factory=deque)
    _last_refused: float = field(init=False, default=-math.inf)

    @property
    def per_second(self) -> float | None:
        """The current limit; None while HeyGen has refused nothing (lately)."""
        return self._rate

    def on_accepted(self, binding: bool) -> None:
        """A request HeyGen did not refuse; ``binding`` tells that requests were waiting for
        the rate (the only time a higher one would have been used)."""
        now = self.clock()
        self._accepted.append(now)
        while self._accepted and self._accepted[0] < now - self.window_seconds:
            self._accepted.popleft()
        if self._rate is None:
            return
        if now - self._last_refused > self.forget_seconds:
            self._rate = None
            return
        if binding:
            self._rate *= 1 + self.increase_per_request

    def on_refused(self) -> None:
        now = self.clock()
        if now - self._last_refused < self.cooldown_seconds:
            return
        self._last_refused = now
        if self._rate is None:
            accepted = sum(1 for at in self._accepted if at >= now - self.window_seconds)
            self._rate = max(accepted, self.min_first_accepted) / self.window_seconds
        self._rate *= self.decrease_factor
