"""Saving a completed video into the template's ``download_to``: under a name nothing the API
returns can steer outside it, with a fresh presigned URL on a retry, and a paid-for video kept
``downloading`` (tried again) for as long as our own disk refuses it."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from watcher.config.templates import Template
from watcher.heygen import videos
from watcher.heygen.errors import ApiError, is_outage
from watcher.pipeline.localretry import local_error_text, local_retry_delay_seconds
from watcher.pipeline.video_context import VIDEO_LOGGER, VideoContext
from watcher.state import names
from watcher.state.journal import VideoRow
from watcher.state.sidecar import current_umask

log = logging.getLogger(VIDEO_LOGGER)

DOWNLOAD_ATTEMPTS = 6
DOWNLOAD_FIRST_DELAY_SECONDS = 2.0
# How long a daemon downloading a video keeps the others of a fleet from starting the same
# download (a daemon that dies mid-download leaves it to another after this long).
DOWNLOAD_HOLD_SECONDS = 600.0
# How a download's local write failure begins (`status` and `/healthz` look for it).
UNSAVED_PREFIX = "cannot save the video"
_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def download_name(stem: str, video_id: str, limit: int = names.DEFAULT_NAME_MAX) -> str:
    """``<stem>.<video_id>.mp4`` with both parts reduced to safe characters: nothing the API
    returns can name a path outside ``download_to``."""
    safe_id = _SAFE_ID.sub("_", video_id)[:128] or "video"
    safe_stem = stem.replace("/", "_").replace("\\", "_").lstrip(".") or "video"
    # A long stem is shortened (deterministically) so that a paid-for video can always be saved.
    return names.fitted(safe_stem, f".{safe_id}.mp4", limit)


def download(context: VideoContext, row: VideoRow, template: Template) -> None:
    if template.download_to is None or row.video_id is None:
        # `download_to` left the template (a reload): the video is done where it is.
        context.finish(row, "completed", error=None)
        return
    if not row.video_url:
        context.finish(row, "failed", error="completed without a video_url")
        return
    target = template.download_to / download_name(
        Path(row.path).stem, row.video_id, names.name_max(template.download_to)
    )
    if target.resolve().parent != template.download_to.resolve():
        context.finish(row, "failed", error="refused a download name outside download_to")
        return
    url = row.video_url
    if row.attempts > 0:
        # A retry: the URL may have expired since (it is presigned), so ask for a fresh one.
        url = _fresh_video_url(context, row, template) or url
    try:
        videos.download(context.client, url, target, 0o666 & ~current_umask())
    except OSError as error:
        # Our disk, not the network (full, no permission, read-only): the video is paid
        # for, so it stays `downloading` and is tried again soon, as long as it takes.
        failures = context.local_failures.get(row.path, 0) + 1
        context.local_failures[row.path] = failures
        reason = f"{UNSAVED_PREFIX} to {target}: {local_error_text(error)}"
        log.error("%s", reason, extra={"file": row.path})
        context.on_event("failure", {"kind": "download"})
        context.journal.update_video(
            row.path, next_at=time.time() + local_retry_delay_seconds(failures), error=reason
        )
        return
    except ApiError as error:
        if is_outage(error) and context.on_outage(error):
            # HeyGen's storage is down, not this video: no attempt spent, tried again as
            # soon as a probe is answered (an outage of any length loses no video).
            context.journal.update_video(row.path, error=str(error))
            return
        attempts = row.attempts + 1
        if attempts >= DOWNLOAD_ATTEMPTS:
            context.finish(row, "failed", error=f"download failed: {error}")
            return
        # 403: expired; the next try, at once, asks the status endpoint for a fresh URL.
        # Otherwise (e.g. a 404 for a short while after `completed`) back off first.
        delay = 0.0 if error.status == 403 else DOWNLOAD_FIRST_DELAY_SECONDS * 2 ** (attempts - 1)
        context.journal.update_video(
            row.path, attempts=attempts, next_at=time.time() + delay, error=str(error)
        )
        return
    context.local_failures.pop(row.path, None)
    context.journal.update_video(row.path, state="completed", downloaded_to=str(target), error=None)
    log.info("video saved to %s", target, extra={"file": row.path})
    context.rewrite_sidecar(row.path)


def _fresh_video_url(context: VideoContext, row: VideoRow, template: Template) -> str | None:
    """The status endpoint signs a new ``video_url`` on every read."""
    if row.video_id is None:
        return None
    try:
        status = videos.get_status(context.client, template.status_path(row.video_id))
    except ApiError as error:
        log.info("could not refresh the video URL (%s)", error, extra={"file": row.path})
        return None
    if status.status != "completed" or not status.video_url:
        return None
    context.journal.update_video(
        row.path, video_url=status.video_url, thumbnail_url=status.thumbnail_url
    )
    return status.video_url
