"""A file's states and the one table of moves between them, which the journal enforces.

A file's life: admitted as `queued` (or `rejected`, or `uploaded` when its sidecar or its bytes
show it was uploaded before) → `uploading` → `recording` → `uploaded`. `retrying` waits for its
next attempt; `failed` gave up until the next start or `heygen-watcher retry`; `held` waits for
the API key to be fixed or for an unreachable API to answer again (nothing is marked failed
for a bad key or an outage, however long). Admitting a new version of a
file (its bytes changed) starts a new life from any state; every other change of state must be
in `TRANSITIONS`.
"""

from __future__ import annotations

from enum import StrEnum


class FileState(StrEnum):
    QUEUED = "queued"
    UPLOADING = "uploading"
    RECORDING = "recording"
    UPLOADED = "uploaded"
    REJECTED = "rejected"
    RETRYING = "retrying"
    FAILED = "failed"
    HELD = "held"


Q, UP, REC, DONE, REJ, RETRY, FAIL, HELD = FileState

# States a file is admitted in (a new row, or a new version of the file replacing its row).
ADMITTED = frozenset({Q, REJ, DONE})
# Still on its way: resumed at start, counted as waiting.
WAITING = (Q, UP, REC, RETRY, HELD)
# Handed back by the retry scheduler when next_attempt_at comes (`recording`: a sidecar that
# could not be written yet).
DUE = (RETRY, REC)
FINAL = (DONE, REJ)
# Decided files whose sidecar (uploaded, rejected, failed) the journal can write again.
KEPT_STATES = (DONE, REJ, FAIL)
# Left without a final outcome by a pass: `scan` and `retry` exit 1 for these.
UNFINISHED = (FAIL, RETRY, HELD)

# `rejected` too: a file the converter cannot read is refused after its admission.
_ON_ITS_WAY = frozenset({UP, REC, RETRY, FAIL, HELD, Q, REJ})
TRANSITIONS: dict[FileState, frozenset[FileState]] = {
    # Before and during the upload anything may happen: sent, reused from the cache (straight
    # to `recording`), refused, paused for the key, or re-queued because the file changed.
    Q: _ON_ITS_WAY,
    UP: _ON_ITS_WAY,
    RETRY: _ON_ITS_WAY,
    HELD: _ON_ITS_WAY,
    # The asset is known: only writing the record remains (retried in place if it fails).
    REC: frozenset({REC, DONE}),
    FAIL: frozenset({RETRY, Q}),
    DONE: frozenset(),
    REJ: frozenset(),
}


# The states each state may be entered from: a write can check a move in its own WHERE clause.
ENTERED_FROM: dict[FileState, tuple[str, ...]] = {
    new: tuple(old.value for old, allowed in TRANSITIONS.items() if new in allowed)
    for new in FileState
}


class IllegalTransition(Exception):
    """A change of state the table does not allow: a bug, never an expected condition."""

    def __init__(self, path: str, current: str, wanted: str) -> None:
        super().__init__(f"{path}: a file cannot go from {current!r} to {wanted!r}")
        self.path = path
        self.current = current
        self.wanted = wanted


def check_transition(path: str, current: str, wanted: str) -> None:
    if FileState(wanted) not in TRANSITIONS[FileState(current)]:
        raise IllegalTransition(path, current, wanted)
