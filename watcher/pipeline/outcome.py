"""What a failed attempt means for its file: pause for the key, hold for an API that does not
answer, look again once the file settles, retry later (spread over ``retry_window_seconds``),
or give up with a sidecar saying why. The one place where that policy lives.

An outage is not the file's fault: a failure that looks like one (no connection, a timeout, a
5xx, from the API or its storage) is checked with one probe. If the probe fails too, the file
is `held` with its attempts untouched, however long the outage lasts, and every upload waits
until the daemon's probe finds the service back. If the probe is answered, the failure was the
file's own and the per-file retry policy applies.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.heygen.body import FileChangedError
from watcher.heygen.errors import ApiError, AuthError, PermanentError, is_outage
from watcher.heygen.reachability import Reachability
from watcher.intake.admission import accepted_types
from watcher.pipeline import records
from watcher.pipeline.localretry import local_retry_delay_seconds
from watcher.pipeline.notices import Notices
from watcher.pipeline.record import Sidecars
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal
from watcher.state.sidecar import iso_from_epoch
from watcher.state.states import FINAL, FileState

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]


class AuthPause:
    """Shared by all workers: set on a 401, cleared when the key changes. (A 403 refuses one
    request, not the key: that file fails with the reason and the others go on.)

    A fleet sharing a journal pauses as one: this daemon's 401 is told to ``on_set`` (the
    service records it in the journal), a pause another daemon recorded is asked of
    ``shared`` (its reason, or None) whenever `active` is looked at, and `clear` (this
    daemon reloaded its key) is told to ``on_clear``, which ends the pause for the whole
    fleet. Once the fleet's pause has been seen, its end (a reload on any daemon) ends this
    daemon's too: the fleet shares one account, and a key still wrong somewhere meets a
    401 again and pauses the fleet again.
    """

    def __init__(
        self,
        shared: Callable[[], str | None] = lambda: None,
        on_set: Callable[[str], None] = lambda reason: None,
        on_clear: Callable[[], None] = lambda: None,
    ) -> None:
        self._lock = threading.Lock()
        self._shared = shared
        self._on_set = on_set
        self._on_clear = on_clear
        self._own: str | None = None  # this daemon's key was refused
        self._fleet: str | None = None  # another daemon's was

    @property
    def reason(self) -> str | None:
        return self._own or self._fleet

    def set(self, reason: str) -> bool:
        """This daemon's key was refused; True the first time (this daemon was not paused)."""
        with self._lock:
            first = self._own is None and self._fleet is None
            tell = self._own is None
            self._own = reason
        if tell:
            self._on_set(reason)
        return first

    def clear(self) -> None:
        with self._lock:
            self._own = self._fleet = None
        self._on_clear()

    @property
    def active(self) -> bool:
        fleet = self._shared()
        with self._lock:
            if fleet is not None:
                if self._own is None and self._fleet is None:
                    log.error(
                        "another daemon of the fleet had its API key refused (%s): uploads "
                        "are paused until a daemon reloads its key",
                        fleet,
                    )
                self._fleet = fleet
                return True
            if self._fleet is not None:
                # Seen, and gone: a daemon reloaded its key. (A 401 not yet recorded in the
                # journal was never seen there: it holds until it is.)
                self._own = self._fleet = None
                return False
            return self._own is not None


def retry_delay_seconds(attempt: int, max_attempts: int, window_seconds: float) -> float:
    """Exponential delays with ±25% jitter whose sum over all attempts is about ``window``."""
    steps = max(1, max_attempts - 1)
    base = window_seconds / (2.0**steps - 1)
    raw = base * 2.0 ** (attempt - 1)
    return max(0.05, raw * random.uniform(0.75, 1.25))


class OutcomePolicy:
    def __init__(
        self,
        journal: Journal,
        live: LiveConfig,
        sidecars: Sidecars,
        auth_pause: AuthPause,
        renotice: Callable[[Path, FolderConfig], None],
        on_event: EventSink,
        on_retry_scheduled: Callable[[], None],
        reachability: Reachability | None = None,
        probe: Callable[[str | None], str | None] = lambda storage_url: None,
        key_origin: Callable[[], str] = lambda: "its source",
        notices: Notices | None = None,
    ) -> None:
        self.notices = notices or Notices(live)
        self.key_origin = key_origin  # where the key came from, for the one loud line
        self.journal = journal
        self.reachability = reachability or Reachability()
        # One cheap request to the API (and the storage host given): None when answered.
        self.probe = probe
        self.live = live
        self.sidecars = sidecars
        self.auth_pause = auth_pause
        self.renotice = renotice
        self.on_event = on_event
        # Wakes the housekeeper: a retry was parked for later.
        self.on_retry_scheduled = on_retry_scheduled

    def upload_failed(self, row: FileRow, error: ApiError | OSError) -> None:
        """Decide what a failed upload attempt means for its file."""
        if isinstance(error, AuthError):
            self.hold_for_auth(row, error)
        elif is_outage(error) and self.unreachable(error):
            self.hold_for_outage(row, str(error))
        elif isinstance(error, FileChangedError):
            self.requeue_changed(row, str(error))
        elif isinstance(error, PermanentError):
            self.fail(row, str(error), final=True)
        elif isinstance(error, ApiError):
            self.fail(row, str(error), final=False)
        elif isinstance(error, FileNotFoundError):
            self.vanished(row.path)
        else:
            self.fail(row, f"cannot read the file: {error.strerror or error}", final=False)

    def unexpected(self, path: Path, error: Exception) -> None:
        """A bug met while working on a file (already logged with its traceback): count it,
        and leave the file where the retry scheduler finds it rather than mid-way until the
        next restart."""
        self.on_event("failure", {"kind": "internal"})
        row = self.journal.get(str(path))
        if row is None or row.state in (*FINAL, FileState.FAILED):
            return
        reason = f"internal error: {type(error).__name__}: {error}"
        if row.state is FileState.RECORDING:
            self.retry_recording(row, reason)
        else:
            self.fail(row, reason, final=False)

    def vanished(self, key: str) -> None:
        row = self.journal.get(key)
        if row is not None and row.state not in FINAL:
            log.info("file vanished before upload", extra={"file": key})
            self.journal.forget(key)

    def hold_for_auth(self, row: FileRow, error: AuthError) -> None:
        self.journal.update(
            row.path, state=FileState.HELD, attempts=row.attempts, last_error=str(error)
        )
        if self.auth_pause.set(str(error)):
            self.journal.set_meta("uploads_paused", str(error))
            log.error(
                "the API refused the key read from %s (%s): uploads are paused until the key "
                "changes",
                self.key_origin(),
                error,
            )
        self.on_event("failure", {"kind": "auth"})

    def unreachable(self, error: Exception) -> bool:
        """Is the service down (already known, or a probe fails now)? Declares it if so
        (the video steps ask this too)."""
        if self.reachability.down:
            return True
        storage_url = error.storage_url if isinstance(error, ApiError) else None
        failure = self.probe(storage_url)
        if failure is None:
            return False
        self.declare_unreachable(f"{error}; {failure}", storage_url)
        return True

    def declare_unreachable(self, reason: str, storage_url: str | None = None) -> None:
        if self.reachability.declare_down(reason, storage_url):
            outage = self.reachability.outage
            since = outage.since if outage is not None else time.time()
            log.error(
                "the API is unreachable (%s): uploads are paused until it answers again", reason
            )
            self.record_outage()
            self.on_event("api", {"unreachable": True, "since": since})
            self.on_retry_scheduled()  # the housekeeper starts probing

    def record_outage(self) -> None:
        """The outage as `status` reads it from the journal: since when, the last error."""
        outage = self.reachability.outage
        if outage is None:
            self.journal.set_meta("api_unreachable", None)
            return
        since = iso_from_epoch(outage.since)
        self.journal.set_meta(
            "api_unreachable",
            {"since": since, "last_error": outage.last_error, "probes": outage.probes},
        )
        if not self.auth_pause.active:
            self.journal.set_meta(
                "uploads_paused", f"the API is unreachable since {since}: {outage.last_error}"
            )

    def hold_for_outage(self, row: FileRow, reason: str) -> None:
        """Wait for the service, not for a retry: attempts are not counted against the file."""
        self.journal.update(
            row.path,
            state=FileState.HELD,
            attempts=row.attempts,  # the row as it was before this attempt counted
            last_error=reason,
            next_attempt_at=None,
        )
        log.info("held until the API answers again: %s", reason, extra={"file": row.path})
        self.on_event("failure", {"kind": "unreachable"})

    def requeue_changed(self, row: FileRow, reason: str) -> None:
        """The file changed under its upload: look again once it settles (keeping its slot)."""
        log.info("%s; it will be uploaded again once it settles", reason, extra={"file": row.path})
        self.journal.update(row.path, state=FileState.QUEUED)
        self.renotice(Path(row.path), self.live.current.folder_of(row.folder))

    def fail(self, row: FileRow, reason: str, *, final: bool) -> None:
        config = self.live.current
        attempts = row.attempts + 1
        self.on_event("failure", {"kind": "permanent" if final else "transient"})
        if not final and attempts < config.api.max_attempts:
            self._park(row, reason, FileState.RETRYING, attempts)
            return
        log.warning("upload failed: %s", reason, extra={"file": row.path})
        failed = replace(row, state=FileState.FAILED, attempts=attempts, last_error=reason)
        document = records.failed_from_row(failed)
        folder = config.folder_of(row.folder)
        self._decide(
            row,
            folder,
            "failed",
            document,
            write_sidecar=True,
            state=FileState.FAILED,
            attempts=attempts,
            last_error=reason,
        )

    def refuse(self, row: FileRow, reason: str, detected_type: str) -> None:
        """The file cannot be made into what HeyGen takes (a conversion the tool refused):
        rejected, with a sidecar saying why, as the sniff's refusals are."""
        log.info("rejected: %s", reason, extra={"file": row.path})
        self.on_event("rejected", {"reason": reason.split(":", 1)[0]})
        folder = self.live.current.folder_of(row.folder)
        rejected = replace(row, state=FileState.REJECTED, last_error=reason)
        rejected = replace(rejected, content_type=detected_type)
        accepted = accepted_types(folder, self.live.current.api.upload_protocol)
        document = records.rejected_from_row(rejected, accepted)
        self._decide(
            row,
            folder,
            "rejected",
            document,
            write_sidecar=folder.on_reject == "sidecar",
            state=FileState.REJECTED,
            last_error=reason,
            content_type=detected_type,
        )

    def _decide(
        self,
        row: FileRow,
        folder: FolderConfig,
        event: str,
        document: dict[str, Any],
        *,
        write_sidecar: bool,
        **changes: Any,
    ) -> None:
        """A file's final word: the row, with the notifications it causes in the same
        commit, then its sidecar."""
        events = self.notices.events(event, row.path, folder, lambda: document)
        self.journal.update(row.path, next_attempt_at=None, events=events, **changes)
        if events:
            self.notices.on_written()
        if write_sidecar:
            self.sidecars.write(Path(row.path), folder, document)

    def retry_recording(self, row: FileRow, reason: str) -> None:
        """The asset is known but its record (move, sidecar) could not be written: a local
        failure (a full disk, no permission), so try again soon, on the short local backoff,
        as long as it takes: the upload itself is never lost."""
        attempts = row.attempts + 1
        self._park(row, reason, FileState.RECORDING, attempts, local_retry_delay_seconds(attempts))

    def _park(
        self,
        row: FileRow,
        reason: str,
        state: FileState,
        attempts: int,
        delay: float | None = None,
    ) -> None:
        """Park the row until ``next_attempt_at``; the scheduler then hands it back."""
        config = self.live.current
        if delay is None:
            delay = retry_delay_seconds(
                attempts, config.api.max_attempts, config.retry_window_seconds
            )
        # The file's own attempts (each may make a few quick tries of a request, counted
        # from one again); a record waiting for a local write is not counted against it.
        counted = (
            f" (attempt {attempts + 1} of {config.api.max_attempts})"
            if state is FileState.RETRYING
            else ""
        )
        log.info("will retry in %.0fs%s: %s", delay, counted, reason, extra={"file": row.path})
        self.journal.update(
            row.path,
            state=state,
            attempts=attempts,
            last_error=reason,
            next_attempt_at=time.time() + delay,
        )
        self.on_retry_scheduled()
