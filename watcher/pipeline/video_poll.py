"""Waiting for a submitted video: one status poll per look, until HeyGen says it completed
(then it is downloaded, if the template says where) or failed, or the template's
``timeout_minutes`` run out."""

from __future__ import annotations

import logging
import time

from watcher.config.templates import Template
from watcher.heygen import videos
from watcher.heygen.errors import ApiError, AuthError, RateLimited, TransientError, is_outage
from watcher.pipeline.video_context import LOST_ANSWER, VIDEO_LOGGER, VideoContext
from watcher.pipeline.video_fetch import download
from watcher.state.journal import VideoRow

log = logging.getLogger(VIDEO_LOGGER)

# Statuses kept as they come while polling; any other non-final one is recorded as processing
# (an API value never becomes a journal state of ours, such as `ready`).
POLL_STATES = ("waiting", "pending", "processing")


def poll(context: VideoContext, row: VideoRow, template: Template) -> None:
    now = time.time()
    if row.deadline is not None and now >= row.deadline:
        context.finish(
            row,
            "timed_out",
            error=(f"not completed after {template.timeout_minutes:g} minutes"),
        )
        return
    if row.video_id is None:
        # Submitted without an id recorded: which video it is cannot be known.
        context.finish(row, "unknown", error=LOST_ANSWER)
        return
    try:
        status = videos.get_status(context.client, template.status_path(row.video_id))
    except (TransientError, RateLimited, AuthError) as error:
        if is_outage(error) and context.on_outage(error):
            # Paused with the uploads, still due: polled as soon as a probe is answered.
            log.info("video status waits for the API (%s)", error, extra={"file": row.path})
            return
        log.info("video status unavailable (%s)", error, extra={"file": row.path})
        context.journal.update_video(row.path, next_at=now + template.poll_interval_seconds)
        return
    except ApiError as error:
        context.finish(row, "failed", error=str(error))
        return
    if status.status == "failed":
        context.finish(row, "failed", error=status.error)
        return
    if status.status == "completed":
        context.journal.update_video(
            row.path,
            state="downloading" if template.download_to else "completed",
            video_url=status.video_url,
            thumbnail_url=status.thumbnail_url,
            duration=status.duration,
            completed_at=now,
            next_at=now,
            attempts=0,
        )
        context.on_event("video", {"status": "completed"})
        log.info("video %s completed", row.video_id, extra={"file": row.path})
        context.rewrite_sidecar(row.path)
        if template.download_to:
            refreshed = context.journal.video(row.path)
            if refreshed is not None:
                download(context, refreshed, template)
        return
    state = status.status if status.status in POLL_STATES else "processing"
    if state != status.status:
        log.info(
            "video status %r: not final, still waiting", status.status, extra={"file": row.path}
        )
    if state != row.state:
        context.journal.update_video(row.path, state=state)
        context.rewrite_sidecar(row.path)
    context.journal.update_video(row.path, next_at=now + template.poll_interval_seconds)
