"""The journal's one interface: every operation the pipeline, the daemon and the commands use.

Two backends implement it and pass the same contract tests (tests/test_journal_contract.py):
`watcher.state.journal_sqlite.SqliteJournal`, the embedded default (one daemon, one state
directory), and `watcher.state.journal_pg.PgJournal`, a PostgreSQL database shared by a
fleet of daemons watching the same folders. Both enforce the file states' transition table
(`watcher.state.states`).

**Claims.** With a shared journal, each file version must be uploaded by exactly one daemon.
A daemon claims a file's row before it requests an upload slot (`claim`), renews the lease
of everything it holds while it works (`renew_claims`), and lets go when its work on the
file ends (`release`). A row whose lease ran out (its daemon was killed or cut off) is
handed out by `orphaned` to the daemon that asks, which claims it and resumes it from its
recorded slot exactly as a restart would. A daemon that stalled past its lease and was taken
over gets `ClaimLost` from its next write to that row (the work in hand is dropped). The
SQLite backend has one process by construction (the state-directory lock), so its claims
always succeed and nothing is ever orphaned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from watcher.state.journal import (
    CachedAsset,
    ConversionRow,
    DaemonRow,
    FileRow,
    OutboxEvent,
    PendingSidecar,
    TransitionHook,
    VideoRow,
)


class Journal(Protocol):
    # -- life cycle --------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """Where the journal is, for messages: a file path or a URL (never a password)."""
        ...

    @property
    def outage(self) -> str | None:
        """Why the journal is waiting for its database right now (work is paused), or None."""
        ...

    # Called about every second by a thread waiting for the journal's database.
    on_waiting: Callable[[], None]
    # Told of every change of a file's state (path, old state or None, new state).
    on_transition: TransitionHook | None

    def close(self) -> None: ...

    # -- files -------------------------------------------------------------------------------
    def get(self, path: str) -> FileRow | None: ...

    def put(self, row: FileRow, *, events: Sequence[OutboxEvent] = ()) -> None:
        """Admit a file (or a new version of it), replacing its row (``events``: what the
        admission causes, in the same transaction). A shared journal keeps
        a row another daemon holds a live claim on, or one that already records this very
        version past `queued` (another daemon got there first)."""
        ...

    def put_many(self, rows: list[FileRow], chunk: int = 5000) -> None: ...

    def update(self, key: str, *, events: Sequence[OutboxEvent] = (), **changes: Any) -> None:
        """Change some columns; a change of state must be in the transition table. ``events``:
        the notifications the change causes, written in its transaction."""
        ...

    def move(self, old_path: str, new_path: str, inode: int | None = None) -> None: ...

    def forget(self, path: str) -> None: ...

    def record_slot(
        self, path: str, *, slot: str, asset_id: str, expires_at: float | None, **changes: Any
    ) -> None: ...

    def finish_upload(
        self, key: str, *, cache: bool, events: Sequence[OutboxEvent] = (), **changes: Any
    ) -> None: ...

    def fingerprints(self) -> dict[str, tuple[int, int, str, float]]:
        """path → (size, mtime_ns, state, updated_at) for every row."""
        ...

    def fingerprints_of(self, paths: Sequence[str]) -> dict[str, tuple[int, int, str, float]]:
        """The same for these paths only (those that have a row)."""
        ...

    def rows_in(self, states: tuple[str, ...]) -> list[FileRow]: ...

    def due(self, now: float) -> list[FileRow]: ...

    def next_due_at(self) -> float | None: ...

    def counts(self) -> dict[str, int]: ...

    def oldest_waiting(self) -> float | None: ...

    def recent_failures(self, limit: int = 10) -> list[FileRow]: ...

    def mark_for_retry(self, paths: list[str] | None = None) -> int: ...

    # -- sidecars that could not be written yet ----------------------------------------------
    def defer_sidecar(
        self,
        location: str,
        file: str,
        folder: str,
        document: dict[str, Any],
        reason: str,
        next_at_for: Callable[[int], float],
    ) -> int:
        """Keep ``document`` for a later write; how many writes of it have failed."""
        ...

    def sidecar_written(self, location: str) -> None: ...

    def pending_sidecars(self, due_before: float | None = None) -> list[PendingSidecar]: ...

    def shortened_sidecars(self, limit: int = 10) -> list[tuple[str, str]]: ...

    def next_sidecar_at(self) -> float | None: ...

    # -- work handed to a running daemon by a command ----------------------------------------
    def request(self, path: str, folder: str) -> float:
        """Ask the daemon (a shared journal: one daemon of the fleet) to look at ``path``."""
        ...

    def take_requests(self) -> list[tuple[str, str]]:
        """(path, folder) of every request, removed as they are taken (the daemon's side)."""
        ...

    # -- claims (see the module docstring) ---------------------------------------------------
    def claim(self, path: str) -> bool:
        """True when this daemon may work on the row now (it exists, is not final, and no
        other daemon holds a live claim on it); the claim then holds for the lease."""
        ...

    def claim_row(self, path: str) -> FileRow | None:
        """`claim`, returning the claimed row as it is now (None when not claimed): one
        round trip where `claim` and `get` would take two."""
        ...

    def renew_claims(self) -> int:
        """Extend the lease of every row this daemon holds; how many."""
        ...

    def release(self, path: str) -> None:
        """This daemon's work on the row ended (for now): its claim lapses at once."""
        ...

    def orphaned(self) -> list[FileRow]:
        """Rows left mid-way whose claim lapsed: another daemon died or stopped."""
        ...

    # -- asset cache -------------------------------------------------------------------------
    def cached_asset(
        self, sha256: str, content_type: str, newer_than: float
    ) -> CachedAsset | None: ...

    def may_have_asset(self, size: int, content_type: str, newer_than: float) -> bool: ...

    def cache_recorded_assets(self) -> int: ...

    # -- the outbox (`watcher.state.journal_outbox`) -----------------------------------------
    def add_events(self, events: Sequence[OutboxEvent]) -> None: ...

    def claim_events(self, now: float, lease_seconds: float, limit: int) -> list[OutboxEvent]:
        """Due pending events, each now held by this daemon for ``lease_seconds``."""
        ...

    def event_delivered(self, event_id: str) -> None: ...

    def event_retry(self, event_id: str, attempts: int, next_at: float, error: str) -> None: ...

    def event_dead(self, event_id: str, attempts: int, error: str) -> None: ...

    def next_event_at(self) -> float | None: ...

    def outbox_counts(self) -> dict[str, int]: ...

    def dead_events(self, limit: int = 10) -> list[OutboxEvent]: ...

    # -- conversions (`watcher.state.journal_conversions`) ------------------------------------
    def plan_conversion(
        self, source_sha256: str, target_type: str, source_type: str, source_size: int
    ) -> None: ...

    def conversion(self, source_sha256: str, target_type: str) -> ConversionRow | None: ...

    def start_conversion(self, source_sha256: str, target_type: str) -> None: ...

    def finish_conversion(
        self,
        source_sha256: str,
        target_type: str,
        *,
        output_sha256: str | None,
        output_size: int,
        action: str,
        tool: str,
        tool_version: str,
    ) -> None: ...

    def set_conversion_output(
        self, source_sha256: str, target_type: str, output_sha256: str
    ) -> None: ...

    def stop_conversion(self, source_sha256: str, target_type: str) -> None: ...

    def conversions_running(self) -> int: ...

    def clear_running_conversions(self) -> None: ...

    # -- videos ------------------------------------------------------------------------------
    def video(self, path: str) -> VideoRow | None: ...

    def add_video(
        self, path: str, template: str, endpoint: str, state: str, **values: Any
    ) -> None: ...

    def update_video(
        self, path: str, *, events: Sequence[OutboxEvent] = (), **changes: Any
    ) -> None: ...

    def claim_video(self, path: str, from_state: str, to_state: str, **changes: Any) -> bool: ...

    def claim_video_step(self, path: str, now: float, hold_seconds: float) -> bool:
        """True when this daemon takes the video's next step (a poll, a download, a look for
        its script): it is in a state that moves on and due at ``now``. Its next look moves
        ``hold_seconds`` ahead, so no other daemon of the fleet takes the same step, and one
        that dies mid-step leaves it to another once that time has passed; the step then
        sets its own next look."""
        ...

    def due_videos(self, now: float) -> list[str]: ...

    def next_video_at(self) -> float | None: ...

    def videos_in(self, states: tuple[str, ...]) -> list[VideoRow]: ...

    def video_counts(self) -> dict[str, int]: ...

    def mark_videos_for_retry(self, paths: list[str] | None = None) -> int: ...

    # -- process-wide facts ------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None: ...

    def get_meta(self, key: str) -> Any: ...

    # -- the daemons using the journal (`status` shows them) ---------------------------------
    def register_daemon(self, version: str) -> None:
        """This daemon starts: a row with its host, pid and version."""
        ...

    def beat_daemon(self, in_flight: int) -> None:
        """This daemon is alive, with this many files in flight."""
        ...

    def unregister_daemon(self) -> None: ...

    def daemons(self) -> list[DaemonRow]: ...

    # -- pauses shared by every daemon using the journal -------------------------------------
    def pause_fleet(self, kind: str, seconds: float, reason: str) -> None:
        """Every daemon using this journal pauses ``kind`` of work for ``seconds`` (a later
        pause already recorded is kept)."""
        ...

    def fleet_pause(self, kind: str) -> tuple[float, str]:
        """(seconds left, reason) of the shared pause of ``kind``; (0, "") when none."""
        ...

    def resume_fleet(self, kind: str) -> None:
        """End the shared pause of ``kind`` now, for every daemon (a 401's pause lasts until
        a daemon reloads its key)."""
        ...
