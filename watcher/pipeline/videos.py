"""The video step: render a template, generate, wait in the journal, download.

Nothing sleeps per video: each step is short and leaves the video's next look (``next_at``)
in the journal, where the daemon's housekeeping finds it, so a restart simply carries on.
A generate request is committed as ``submitting`` before it is sent; one found in that state
after a restart, or whose answer was lost or unclear (timeout, reset, 408, 5xx), becomes
``unknown`` and is never sent again on our own: each generation costs credits, and
`heygen-watcher retry` resubmits on purpose.

An asset HeyGen is still ingesting (its completion answered ``processing``) is waited for in
state ``waiting_asset``: the idempotent completion is asked again, with growing gaps up to the
template's ``poll_interval_seconds``, for at most the template's ``timeout_minutes``. A video
refused with ``asset_not_available`` goes back there too (a few times at most).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.config.regularfile import NotRegularFile, ReadLimitExceeded, read_regular
from watcher.config.templates import RenderError, Template, render, values_for
from watcher.heygen import videos
from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import (
    ApiError,
    AuthError,
    PermanentError,
    QuotaError,
    RateLimited,
    ResponseLost,
    TransientError,
    is_outage,
)
from watcher.heygen.retry import requests_for
from watcher.heygen.uploads import complete_v3
from watcher.pipeline.localretry import local_error_text, local_retry_delay_seconds
from watcher.state import names
from watcher.state.journal import FileRow, VideoRow
from watcher.state.journal_api import Journal
from watcher.state.sidecar import current_umask, iso_from_epoch

log = logging.getLogger(__name__)

SCRIPT_CHECK_SECONDS = 0.25
DOWNLOAD_ATTEMPTS = 6
DOWNLOAD_FIRST_DELAY_SECONDS = 2.0
# How long a daemon downloading a video keeps the others of a fleet from starting the same
# download (a daemon that dies mid-download leaves it to another after this long).
DOWNLOAD_HOLD_SECONDS = 600.0
SUBMIT_RETRY_SECONDS = 30.0
AUTH_RETRY_SECONDS = 60.0
# Waiting for an asset HeyGen is still ingesting: the first look again after this long.
ASSET_CHECK_MIN_SECONDS = 1.0
# HeyGen's code for a video naming an asset that is not usable (yet); its hint: "may still be
# processing". Submissions refused with it go back to waiting this many times at most.
ASSET_NOT_AVAILABLE = "asset_not_available"
MAX_NOT_AVAILABLE_SUBMITS = 5
# Statuses kept as they come while polling; any other non-final one is recorded as processing
# (an API value never becomes a journal state of ours, such as `ready`).
POLL_STATES = ("waiting", "pending", "processing")
_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")
LOST_ANSWER = (
    "the answer to the generate request was lost: the video may or may not have been "
    "created; run `heygen-watcher retry` to submit it again"
)


# How a download's local write failure begins (`status` and `/healthz` look for it).
UNSAVED_PREFIX = "cannot save the video"
# Steps that call HeyGen: while the API is unreachable they wait (due) for the daemon's probe,
# which hands every due video on at once when the API answers again.
_CALLS_THE_API = frozenset(
    {"waiting_asset", "ready", "submitted", "waiting", "pending", "processing", "downloading"}
)


# A script is text to be spoken: 64 KiB is far more than any video takes.
MAX_SCRIPT_BYTES = 64 * 1024


def script_path_for(media: Path) -> Path:
    return media.with_name(media.stem + ".txt")


def download_name(stem: str, video_id: str, limit: int = names.DEFAULT_NAME_MAX) -> str:
    """``<stem>.<video_id>.mp4`` with both parts reduced to safe characters: nothing the API
    returns can name a path outside ``download_to``."""
    safe_id = _SAFE_ID.sub("_", video_id)[:128] or "video"
    safe_stem = stem.replace("/", "_").replace("\\", "_").lstrip(".") or "video"
    # A long stem is shortened (deterministically) so that a paid-for video can always be saved.
    return names.fitted(safe_stem, f".{safe_id}.mp4", limit)


def sidecar_status(state: str) -> str:
    return {"downloading": "completed", "submitting": "unknown"}.get(state, state)


def sidecar_video(row: VideoRow) -> dict[str, Any]:
    """The sidecar's ``video`` object."""
    document: dict[str, Any] = {
        "template": row.template,
        "endpoint": row.endpoint,
        "video_id": row.video_id,
        "status": sidecar_status(row.state),
        "video_url": row.video_url,
        "thumbnail_url": row.thumbnail_url,
        "duration": row.duration,
        "error": row.error,
        "submitted_at": iso_from_epoch(row.submitted_at) if row.submitted_at else None,
        "completed_at": iso_from_epoch(row.completed_at) if row.completed_at else None,
        "downloaded_to": row.downloaded_to,
    }
    return document


@dataclass
class VideoPause:
    """402: video generation waits (uploads go on); shared by every video."""

    until: float = 0.0
    reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, seconds: float, reason: str) -> None:
        with self._lock:
            self.until = time.time() + seconds
            self.reason = reason

    def active(self) -> bool:
        with self._lock:
            return time.time() < self.until

    def clear_if_over(self) -> bool:
        """True once, when a pause that has run out is cleared."""
        with self._lock:
            if self.until and time.time() >= self.until:
                self.until = 0.0
                self.reason = ""
                return True
            return False


@dataclass
class VideoStage:
    live: LiveConfig
    journal: Journal
    client: HeyGenClient
    rewrite_sidecar: Callable[[str], object]
    on_event: Callable[[str, dict[str, Any]], None] = lambda kind, details: None
    pause: VideoPause = field(default_factory=VideoPause)
    # Failed local writes of each file's download, for the backoff (reset by a success).
    _local_failures: dict[str, int] = field(default_factory=dict)
    # An error that may mean HeyGen is down: True when it is (a probe failed too, as for the
    # uploads); the video then waits for the API, not on its own interval.
    on_outage: Callable[[Exception], bool] = lambda error: False

    # -- entry points ------------------------------------------------------------------------
    def begin(
        self, row: FileRow, folder: FolderConfig, template: Template, *, asset_usable: bool = True
    ) -> None:
        """Called once a templated folder's file is uploaded, before its sidecar is final.

        ``asset_usable=False``: HeyGen is still ingesting the asset; the video waits for it."""
        if self.journal.video(row.path) is not None:
            return  # a resumed file: its video is already on its way (or done)
        script_path = script_path_for(Path(row.path)) if template.uses_script else None
        now = time.time()
        if asset_usable:
            state = "waiting_script" if script_path else "ready"
            deadline = now + template.script_wait_seconds if script_path else None
        else:
            log.info("asset still processing; the video waits for it", extra={"file": row.path})
            state, deadline = "waiting_asset", now + template.timeout_minutes * 60
        self.journal.add_video(
            row.path,
            template.name,
            template.endpoint,
            state,
            script_path=str(script_path) if script_path else None,
            # Not due until its file is recorded: the recorder takes the first step then, so
            # no step (of any daemon) runs while the file's sidecar is still being written.
            next_at=None,
            deadline=deadline,
        )

    def resume(self) -> None:
        """At start: a generate request found in flight may have been carried out."""
        for row in self.journal.videos_in(("submitting",)):
            log.warning(
                "video request was in flight when the daemon stopped; not re-sending",
                extra={"file": row.path},
            )
            self.journal.update_video(row.path, state="unknown", error=LOST_ANSWER)
            self.rewrite_sidecar(row.path)

    def step(self, path: str) -> None:
        """Move one video forward by one step."""
        row = self.journal.video(path)
        if row is None:
            return
        template = self.live.current.templates.get(row.template)
        if template is None:
            self._finish(row, "failed", error=f"template {row.template!r} is no longer configured")
            return
        handler = {
            "waiting_asset": self._wait_for_asset,
            "waiting_script": self._look_for_script,
            "ready": self._submit,
            "submitted": self._poll,
            "waiting": self._poll,
            "pending": self._poll,
            "processing": self._poll,
            "downloading": self._download,
        }.get(row.state)
        if row.state in _CALLS_THE_API and self.client.reachability.down:
            return  # left due: the probe that finds the API back hands it on at once
        if handler is None:
            return
        # One daemon of a fleet takes each step (one status poll per interval, not one per
        # daemon): the next look moves a hold ahead (a download may take long: held longer).
        now = time.time()
        hold = self.live.current.lease_seconds
        if row.state == "downloading":
            hold = max(hold, DOWNLOAD_HOLD_SECONDS)
        if not self.journal.claim_video_step(path, now, hold):
            return
        handler(row, template)
        # A step that set no next look of its own leaves the video due as it found it. (One
        # that dies mid-way leaves the hold: another daemon takes the step after it.)
        after = self.journal.video(path)
        if after is not None and after.next_at == now + hold:
            self.journal.update_video(path, next_at=row.next_at if row.next_at is not None else now)

    # -- steps -------------------------------------------------------------------------------
    def _wait_for_asset(self, row: VideoRow, template: Template) -> None:
        file_row = self.journal.get(row.path)
        if file_row is None or not file_row.asset_id:
            return
        now = time.time()
        budget = template.timeout_minutes * 60
        deadline = row.deadline if row.deadline is not None else now + budget
        if now >= deadline:
            self._finish(
                row,
                "failed",
                error=(
                    f"asset {file_row.asset_id} was still not usable after "
                    f"{template.timeout_minutes:g} minutes"
                ),
            )
            return
        try:
            usable = self._asset_usable(file_row)
        except (TransientError, RateLimited, AuthError) as error:
            log.info("asset status unavailable (%s)", error, extra={"file": row.path})
            usable = False
        except ApiError as error:
            self._finish(row, "failed", error=f"asset {file_row.asset_id} is not usable: {error}")
            return
        if not usable:
            waited = now - (deadline - budget)
            delay = min(template.poll_interval_seconds, max(ASSET_CHECK_MIN_SECONDS, waited / 2))
            self.journal.update_video(row.path, deadline=deadline, next_at=now + delay)
            return
        log.info("asset usable; the video goes ahead", extra={"file": row.path})
        script = row.script_path is not None and row.body is None
        self.journal.update_video(
            row.path,
            state="waiting_script" if script else "ready",
            deadline=now + template.script_wait_seconds if script else None,
            next_at=now,
        )
        self.step(row.path)

    def _asset_usable(self, file_row: FileRow) -> bool:
        """Ask HeyGen again whether the asset is usable. Only v3 direct uploads can be asked
        (their completion is idempotent and answers a status); for the others, waiting was
        all there was to do."""
        if file_row.protocol != "v3-direct" or not file_row.asset_id:
            return True
        return complete_v3(self.client, file_row.asset_id, file_row.sha256).usable

    def _look_for_script(self, row: VideoRow, template: Template) -> None:
        script_path = Path(row.script_path or "")
        try:
            script = read_regular(script_path, MAX_SCRIPT_BYTES).decode("utf-8").strip()
        except (NotRegularFile, ReadLimitExceeded) as error:
            # Planted or oversized: refused with the reason, never read without a bound.
            self._finish(row, "failed", error=f"script {script_path.name} refused: {error.reason}")
            return
        except FileNotFoundError:
            deadline = row.deadline or time.time() + template.script_wait_seconds
            if time.time() >= deadline:
                self._finish(
                    row,
                    "failed",
                    error=(
                        f"script {script_path.name} did not appear beside the file within "
                        f"{template.script_wait_seconds:g}s"
                    ),
                )
            else:
                self.journal.update_video(
                    row.path, deadline=deadline, next_at=time.time() + SCRIPT_CHECK_SECONDS
                )
            return
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            self._finish(row, "failed", error=f"cannot read script {script_path.name}: {reason}")
            return
        self._prepare(row, template, script)

    def _prepare(self, row: VideoRow, template: Template, script: str | None) -> None:
        file_row = self.journal.get(row.path)
        if file_row is None or not file_row.asset_id:
            return
        values = values_for(
            asset_id=file_row.asset_id,
            asset_url=file_row.asset_url or "",
            path=Path(row.path),
            content_type=file_row.content_type or "",
            size=file_row.size,
            sha256=file_row.sha256 or "",
            folder=Path(file_row.folder),
            script=script,
        )
        try:
            body = render(template.body, values, where=f"templates.{template.name}.body")
        except RenderError as error:
            self._finish(row, "failed", error=str(error))
            return
        # Only from the state this step read: a video another daemon has meanwhile sent is
        # not put back to `ready` (and sent again).
        if not self.journal.claim_video(
            row.path, row.state, "ready", body=json.dumps(body), next_at=time.time()
        ):
            return
        refreshed = self.journal.video(row.path)
        if refreshed is not None:
            self._submit(refreshed, template)

    def _submit(self, row: VideoRow, template: Template) -> None:
        if row.body is None:
            self._prepare(row, template, None)
            return
        if self.pause.active():
            self.journal.update_video(row.path, next_at=self.pause.until)
            return
        # Committed before sending: if we die mid-request, the next start knows not to resend;
        # and only the one caller that moves it out of `ready` sends it at all.
        if not self.journal.claim_video(row.path, "ready", "submitting", attempts=row.attempts + 1):
            return
        try:
            video_id = videos.generate(self.client, row.endpoint, json.loads(row.body))
        except ResponseLost:
            log.warning("video request answer lost; not re-sending", extra={"file": row.path})
            self._finish(row, "unknown", error=LOST_ANSWER)
            return
        except QuotaError as error:
            self._quota_paused(row, error)
            return
        except (AuthError, TransientError, RateLimited) as error:
            wait = AUTH_RETRY_SECONDS if isinstance(error, AuthError) else SUBMIT_RETRY_SECONDS
            if is_outage(error) and self.on_outage(error):
                wait = 0.0  # due at once: sent again as soon as a probe is answered
            log.info(
                "video request failed (%s); trying again in %.0fs",
                error,
                wait,
                extra={"file": row.path},
            )
            self.journal.update_video(
                row.path, state="ready", next_at=time.time() + wait, error=str(error)
            )
            return
        except PermanentError as error:
            if error.code == ASSET_NOT_AVAILABLE and row.attempts + 1 < MAX_NOT_AVAILABLE_SUBMITS:
                self._asset_not_available(row, template, error)
                return
            self._finish(row, "failed", error=str(error))
            return
        if self.pause.clear_if_over():
            self.journal.set_meta("videos_paused", None)
            log.info("video generation resumed")
        now = time.time()
        log.info("video %s submitted", video_id, extra={"file": row.path})
        self.journal.update_video(
            row.path,
            state="submitted",
            video_id=video_id,
            error=None,
            submitted_at=now,
            # With `wait: false` there is no next look: the sidecar stays at `submitted`.
            next_at=now + template.initial_delay_seconds if template.wait else None,
            deadline=now + template.timeout_minutes * 60,
        )
        self.on_event("video", {"status": "submitted"})
        self.rewrite_sidecar(row.path)

    def _asset_not_available(self, row: VideoRow, template: Template, error: ApiError) -> None:
        """HeyGen refused the video because the asset is not usable yet: wait for it."""
        now = time.time()
        delay = min(template.poll_interval_seconds, ASSET_CHECK_MIN_SECONDS * 2**row.attempts)
        log.info(
            "video refused (%s); waiting for the asset before trying again",
            error,
            extra={"file": row.path},
        )
        self.journal.update_video(
            row.path,
            state="waiting_asset",
            error=str(error),
            next_at=now + delay,
            deadline=now + template.timeout_minutes * 60,
        )

    def _quota_paused(self, row: VideoRow, error: QuotaError) -> None:
        seconds = self.live.current.quota_pause_seconds
        first = not self.pause.active()
        self.pause.set(seconds, str(error))
        self.journal.set_meta("videos_paused", str(error))
        if first:
            log.error(
                "no credits left (%s): video generation paused for %.0fs; uploads go on",
                error,
                seconds,
            )
        self.journal.update_video(
            row.path, state="ready", next_at=self.pause.until, error=f"waiting for credits: {error}"
        )
        self.on_event("failure", {"kind": "quota"})

    def _poll(self, row: VideoRow, template: Template) -> None:
        now = time.time()
        if row.deadline is not None and now >= row.deadline:
            self._finish(
                row,
                "timed_out",
                error=(f"not completed after {template.timeout_minutes:g} minutes"),
            )
            return
        if row.video_id is None:
            # Submitted without an id recorded: which video it is cannot be known.
            self._finish(row, "unknown", error=LOST_ANSWER)
            return
        try:
            status = videos.get_status(self.client, template.status_path(row.video_id))
        except (TransientError, RateLimited, AuthError) as error:
            if is_outage(error) and self.on_outage(error):
                # Paused with the uploads, still due: polled as soon as a probe is answered.
                log.info("video status waits for the API (%s)", error, extra={"file": row.path})
                return
            log.info("video status unavailable (%s)", error, extra={"file": row.path})
            self.journal.update_video(row.path, next_at=now + template.poll_interval_seconds)
            return
        except ApiError as error:
            self._finish(row, "failed", error=str(error))
            return
        if status.status == "failed":
            self._finish(row, "failed", error=status.error)
            return
        if status.status == "completed":
            self.journal.update_video(
                row.path,
                state="downloading" if template.download_to else "completed",
                video_url=status.video_url,
                thumbnail_url=status.thumbnail_url,
                duration=status.duration,
                completed_at=now,
                next_at=now,
                attempts=0,
            )
            self.on_event("video", {"status": "completed"})
            log.info("video %s completed", row.video_id, extra={"file": row.path})
            self.rewrite_sidecar(row.path)
            if template.download_to:
                refreshed = self.journal.video(row.path)
                if refreshed is not None:
                    self._download(refreshed, template)
            return
        state = status.status if status.status in POLL_STATES else "processing"
        if state != status.status:
            log.info(
                "video status %r: not final, still waiting", status.status, extra={"file": row.path}
            )
        if state != row.state:
            self.journal.update_video(row.path, state=state)
            self.rewrite_sidecar(row.path)
        self.journal.update_video(row.path, next_at=now + template.poll_interval_seconds)

    def _download(self, row: VideoRow, template: Template) -> None:
        if template.download_to is None or row.video_id is None:
            # `download_to` left the template (a reload): the video is done where it is.
            self._finish(row, "completed", error=None)
            return
        if not row.video_url:
            self._finish(row, "failed", error="completed without a video_url")
            return
        target = template.download_to / download_name(
            Path(row.path).stem, row.video_id, names.name_max(template.download_to)
        )
        if target.resolve().parent != template.download_to.resolve():
            self._finish(row, "failed", error="refused a download name outside download_to")
            return
        url = row.video_url
        if row.attempts > 0:
            # A retry: the URL may have expired since (it is presigned), so ask for a fresh one.
            url = self._fresh_video_url(row, template) or url
        try:
            videos.download(self.client, url, target, 0o666 & ~current_umask())
        except OSError as error:
            # Our disk, not the network (full, no permission, read-only): the video is paid
            # for, so it stays `downloading` and is tried again soon, as long as it takes.
            failures = self._local_failures.get(row.path, 0) + 1
            self._local_failures[row.path] = failures
            reason = f"{UNSAVED_PREFIX} to {target}: {local_error_text(error)}"
            log.error("%s", reason, extra={"file": row.path})
            self.on_event("failure", {"kind": "download"})
            self.journal.update_video(
                row.path, next_at=time.time() + local_retry_delay_seconds(failures), error=reason
            )
            return
        except ApiError as error:
            if is_outage(error) and self.on_outage(error):
                # HeyGen's storage is down, not this video: no attempt spent, tried again as
                # soon as a probe is answered (an outage of any length loses no video).
                self.journal.update_video(row.path, error=str(error))
                return
            attempts = row.attempts + 1
            if attempts >= DOWNLOAD_ATTEMPTS:
                self._finish(row, "failed", error=f"download failed: {error}")
                return
            # 403: expired; the next try, at once, asks the status endpoint for a fresh URL.
            # Otherwise (e.g. a 404 for a short while after `completed`) back off first.
            delay = (
                0.0 if error.status == 403 else DOWNLOAD_FIRST_DELAY_SECONDS * 2 ** (attempts - 1)
            )
            self.journal.update_video(
                row.path, attempts=attempts, next_at=time.time() + delay, error=str(error)
            )
            return
        self._local_failures.pop(row.path, None)
        self.journal.update_video(
            row.path, state="completed", downloaded_to=str(target), error=None
        )
        log.info("video saved to %s", target, extra={"file": row.path})
        self.rewrite_sidecar(row.path)

    def _fresh_video_url(self, row: VideoRow, template: Template) -> str | None:
        """The status endpoint signs a new ``video_url`` on every read."""
        if row.video_id is None:
            return None
        try:
            status = videos.get_status(self.client, template.status_path(row.video_id))
        except ApiError as error:
            log.info("could not refresh the video URL (%s)", error, extra={"file": row.path})
            return None
        if status.status != "completed" or not status.video_url:
            return None
        self.journal.update_video(
            row.path, video_url=status.video_url, thumbnail_url=status.thumbnail_url
        )
        return status.video_url

    def _finish(self, row: VideoRow, state: str, *, error: str | None) -> None:
        self.journal.update_video(row.path, state=state, error=error, next_at=None)
        if state != "completed":
            log.warning("video %s: %s", state, error, extra={"file": row.path})
        self.on_event("video", {"status": state})
        self.rewrite_sidecar(row.path)


class VideoRunner:
    """Runs video steps on the worker pool: each file's steps one at a time, each queued once.

    A step leaves the video's next look in the journal; `on_step_done` wakes the housekeeper so
    it sees that time.
    """

    def __init__(
        self,
        stage: VideoStage,
        run_task: Callable[[Callable[[], None], str], bool],
        on_step_done: Callable[[], None],
    ) -> None:
        self.stage = stage
        self.run_task = run_task
        self.on_step_done = on_step_done
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        self._running: set[str] = set()

    def submit(self, key: str) -> None:
        """Queue one step of a file's video (a poll, a download, a submission)."""
        with self._lock:
            if key in self._queued:
                return
            self._queued.add(key)

        def step() -> None:
            with self._lock:
                self._queued.discard(key)
            self.run_step(key)

        if not self.run_task(step, f"the video step of {key}"):
            with self._lock:
                self._queued.discard(key)

    def run_step(self, key: str) -> None:
        """One step of a video, never two at once for the same file."""
        with self._lock:
            if key in self._running:
                return  # the step under way leaves the next look in the journal
            self._running.add(key)
        try:
            with requests_for(key):
                self.stage.step(key)
        finally:
            with self._lock:
                self._running.discard(key)
            self.on_step_done()
