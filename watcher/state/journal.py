"""The journal's public face: the rows it keeps and the errors it raises, whichever backend
holds them (`watcher.state.journal_sqlite.SqliteJournal`, the embedded default, or
`watcher.state.journal_pg.PgJournal`, a fleet's shared database; the operations they share
are written once in `watcher.state.journal_core`).

The journal is the single source of truth for progress: one row per file, every state change
committed before the next step starts, so a process killed at any point resumes from the last
committed step. The asset cache (sha256 + content type → asset) lives there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from watcher.state.states import FileState

if TYPE_CHECKING:
    from watcher.state.journal_sqlite import SqliteJournal

# A video's life: (waiting_asset →) waiting_script → ready → submitting → submitted →
# waiting/pending → processing → downloading → completed; or failed, timed_out, or unknown (the
# generate answer was lost: never re-sent on our own, since each generation costs credits).
VIDEO_ACTIVE_STATES = (
    "waiting_asset",
    "waiting_script",
    "ready",
    "submitted",
    "waiting",
    "pending",
    "processing",
    "downloading",
)
VIDEO_STATES = (*VIDEO_ACTIVE_STATES, "submitting", "completed", "failed", "timed_out", "unknown")


class JournalError(Exception):
    """The journal cannot be opened or read: corrupt, unreadable, or from a newer version."""


class ClaimLost(JournalError):
    """A shared journal refused a write for a file this daemon no longer holds: it stalled
    past its lease and another daemon took the file over. The work in hand is dropped."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path


@dataclass(frozen=True)
class FileRow:
    path: str
    folder: str
    size: int
    mtime_ns: int
    inode: int
    sha256: str | None
    content_type: str | None
    state: FileState
    attempts: int
    next_attempt_at: float | None
    asset_id: str | None
    asset_url: str | None
    protocol: str | None
    reused: int
    previous_asset_id: str | None
    slot: str | None
    slot_expires_at: float | None
    sidecar: str | None
    last_error: str | None
    created_at: float
    updated_at: float

    def same_file(self, size: int, mtime_ns: int, inode: int) -> bool:
        return (self.size, self.mtime_ns, self.inode) == (size, mtime_ns, inode)


@dataclass(frozen=True)
class VideoRow:
    path: str
    template: str
    endpoint: str
    state: str
    video_id: str | None
    script_path: str | None
    body: str | None
    attempts: int
    next_at: float | None
    deadline: float | None
    video_url: str | None
    thumbnail_url: str | None
    duration: float | None
    error: str | None
    submitted_at: float | None
    completed_at: float | None
    downloaded_to: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ConversionRow:
    """Original bytes (by sha256) converted to a type HeyGen takes: planned at admission,
    finished (the output's fields set) once the converter has written it. The files' rows of
    every copy of those bytes share it: the asset cache keys on the original."""

    source_sha256: str
    target_type: str
    source_type: str
    source_size: int
    output_sha256: str | None
    output_size: int | None
    action: str | None  # "remux", "transcode" or "image"
    tool: str | None
    tool_version: str | None
    started_at: float | None  # a conversion is running (or was, when its process died)
    converted_at: float | None


@dataclass(frozen=True)
class OutboxEvent:
    """One notification to deliver: written in the transaction of the change that causes it,
    delivered at least once by the outbox worker. ``id`` is the receiver's dedup key (the
    Standard Webhooks `webhook-id`): the same for every retry and after a restart."""

    id: str
    event: str
    path: str
    target: str
    body: str
    attempts: int = 0
    next_at: float = 0.0
    state: str = "pending"  # pending, delivered, dead
    last_error: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class DaemonRow:
    """A daemon using the journal, as `status` shows it."""

    owner: str
    host: str
    pid: int
    version: str
    started_at: float
    heartbeat_age: float  # seconds since its last heartbeat, on the journal's clock
    in_flight: int


@dataclass(frozen=True)
class CachedAsset:
    asset_id: str
    url: str
    protocol: str
    uploaded_at: float


# Told of every change of a file's state: (path, old state or None for a new row, new state).
TransitionHook = Callable[[str, str | None, str], None]


@dataclass(frozen=True)
class PendingSidecar:
    location: str
    file: str
    folder: str
    document: dict[str, Any]
    reason: str
    failures: int
    next_at: float


def __getattr__(name: str) -> type[SqliteJournal]:
    """``SqliteJournal``, the default backend, reachable here too: the backend imports this
    module's types, so it is imported on first use rather than at the top (no cycle)."""
    if name == "SqliteJournal":
        from watcher.state.journal_sqlite import SqliteJournal

        return SqliteJournal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
