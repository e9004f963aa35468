"""What one `scan` did, and a progress bar while it does it.

The summary counts this run's work (not the journal's totals): uploaded, reused (the asset
cache), rejected, failed (left without a final outcome), already done (nothing to do). The bar
(tqdm, on a terminal only) shows done/total, the rate and an ETA; log lines are printed above
it instead of tearing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


@dataclass
class RunTally:
    """Counts the pipeline's events of this run (thread-safe: workers report them)."""

    uploaded: int = 0
    reused: int = 0
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, kind: str, details: dict[str, Any]) -> None:
        with self._lock:
            if kind == "uploaded":
                self.uploaded += 1
            elif kind == "reused":
                self.reused += 1
            elif kind == "rejected":
                self.rejected += 1

    def summary(self, failed: int, already_done: int) -> str:
        return (
            f"this run: {self.uploaded} uploaded, {self.reused} reused, {self.rejected} "
            f"rejected, {failed} failed, {already_done} already done"
        )


class ProgressBar:
    """done/total of the files this pass queued; total grows if more are queued meanwhile."""

    def __init__(self) -> None:
        self._bar = tqdm(total=0, unit="file", desc="scan", dynamic_ncols=True, leave=True)
        self._total = 0

    def __call__(self, busy: int) -> None:
        done = int(self._bar.n)
        self._total = max(self._total, done + busy)
        self._bar.total = self._total
        self._bar.update(max(0, self._total - busy - done))

    def close(self) -> None:
        self._bar.close()


def progress_for(terminal: bool) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """(the callback for `Daemon.wait_until_idle`, how to close it); nothing off a terminal."""
    if not terminal:
        return None, lambda: None
    bar = ProgressBar()
    return bar, bar.close


@contextmanager
def logs_above_the_bar(active: bool) -> Iterator[None]:
    """While the bar is drawn, log lines go through tqdm, which prints them above it."""
    with logging_redirect_tqdm() if active else nullcontext():
        yield
