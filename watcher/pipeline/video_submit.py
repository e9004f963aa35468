"""Asking HeyGen for a video: render the template's body, then send the generate request.

A generate request is committed as ``submitting`` before it is sent; one found in that state
after a restart, or whose answer was lost or unclear (timeout, reset, 408, 5xx), becomes
``unknown`` and is never sent again on our own: each generation costs credits, and
`heygen-watcher retry` resubmits on purpose.

A 402 pauses every video's generation (uploads go on); a video refused with
``asset_not_available`` goes back to waiting for its asset (a few times at most).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from watcher.config.templates import RenderError, Template, render, values_for
from watcher.heygen import videos
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
from watcher.pipeline.video_asset import ASSET_CHECK_MIN_SECONDS
from watcher.pipeline.video_context import LOST_ANSWER, VIDEO_LOGGER, VideoContext
from watcher.state.journal import VideoRow

log = logging.getLogger(VIDEO_LOGGER)

SUBMIT_RETRY_SECONDS = 30.0
AUTH_RETRY_SECONDS = 60.0
# HeyGen's code for a video naming an asset that is not usable (yet); its hint: "may still be
# processing". Submissions refused with it go back to waiting this many times at most.
ASSET_NOT_AVAILABLE = "asset_not_available"
MAX_NOT_AVAILABLE_SUBMITS = 5


def prepare(context: VideoContext, row: VideoRow, template: Template, script: str | None) -> None:
    """Render the template's body for the file (and its script), then submit it."""
    file_row = context.journal.get(row.path)
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
        context.finish(row, "failed", error=str(error))
        return
    # Only from the state this step read: a video another daemon has meanwhile sent is
    # not put back to `ready` (and sent again).
    if not context.journal.claim_video(
        row.path, row.state, "ready", body=json.dumps(body), next_at=time.time()
    ):
        return
    refreshed = context.journal.video(row.path)
    if refreshed is not None:
        submit(context, refreshed, template)


def submit(context: VideoContext, row: VideoRow, template: Template) -> None:
    """Send the generate request of a ``ready`` video (rendering its body first if need be)."""
    if row.body is None:
        prepare(context, row, template, None)
        return
    if context.pause.active():
        context.journal.update_video(row.path, next_at=context.pause.until)
        return
    # Committed before sending: if we die mid-request, the next start knows not to resend;
    # and only the one caller that moves it out of `ready` sends it at all.
    if not context.journal.claim_video(row.path, "ready", "submitting", attempts=row.attempts + 1):
        return
    try:
        video_id = videos.generate(context.client, row.endpoint, json.loads(row.body))
    except ResponseLost:
        log.warning("video request answer lost; not re-sending", extra={"file": row.path})
        context.finish(row, "unknown", error=LOST_ANSWER)
        return
    except QuotaError as error:
        _quota_paused(context, row, error)
        return
    except (AuthError, TransientError, RateLimited) as error:
        wait = AUTH_RETRY_SECONDS if isinstance(error, AuthError) else SUBMIT_RETRY_SECONDS
        if is_outage(error) and context.on_outage(error):
            wait = 0.0  # due at once: sent again as soon as a probe is answered
        log.info(
            "video request failed (%s); trying again in %.0fs",
            error,
            wait,
            extra={"file": row.path},
        )
        context.journal.update_video(
            row.path, state="ready", next_at=time.time() + wait, error=str(error)
        )
        return
    except PermanentError as error:
        if error.code == ASSET_NOT_AVAILABLE and row.attempts + 1 < MAX_NOT_AVAILABLE_SUBMITS:
            _asset_not_available(context, row, template, error)
            return
        context.finish(row, "failed", error=str(error))
        return
    if context.pause.clear_if_over():
        context.journal.set_meta("videos_paused", None)
        log.info("video generation resumed")
    now = time.time()
    log.info("video %s submitted", video_id, extra={"file": row.path})
    context.journal.update_video(
        row.path,
        state="submitted",
        video_id=video_id,
        error=None,
        submitted_at=now,
        # With `wait: false` there is no next look: the sidecar stays at `submitted`.
        next_at=now + template.initial_delay_seconds if template.wait else None,
        deadline=now + template.timeout_minutes * 60,
    )
    context.on_event("video", {"status": "submitted"})
    context.rewrite_sidecar(row.path)


def _asset_not_available(
    context: VideoContext, row: VideoRow, template: Template, error: ApiError
) -> None:
    """HeyGen refused the video because the asset is not usable yet: wait for it."""
    now = time.time()
    delay = min(template.poll_interval_seconds, ASSET_CHECK_MIN_SECONDS * 2**row.attempts)
    log.info(
        "video refused (%s); waiting for the asset before trying again",
        error,
        extra={"file": row.path},
    )
    context.journal.update_video(
        row.path,
        state="waiting_asset",
        error=str(error),
        next_at=now + delay,
        deadline=now + template.timeout_minutes * 60,
    )


def _quota_paused(context: VideoContext, row: VideoRow, error: QuotaError) -> None:
    seconds = context.live.current.quota_pause_seconds
    first = not context.pause.active()
    context.pause.set(seconds, str(error))
    context.journal.set_meta("videos_paused", str(error))
    if first:
        log.error(
            "no credits left (%s): video generation paused for %.0fs; uploads go on",
            error,
            seconds,
        )
    context.journal.update_video(
        row.path,
        state="ready",
        next_at=context.pause.until,
        error=f"waiting for credits: {error}",
    )
    context.on_event("failure", {"kind": "quota"})
