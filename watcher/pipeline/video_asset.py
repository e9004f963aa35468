"""Waiting for an asset HeyGen is still ingesting, before its video is asked for.

An asset whose completion answered ``processing`` is waited for in state ``waiting_asset``:
the idempotent completion is asked again, with growing gaps up to the template's
``poll_interval_seconds``, for at most the template's ``timeout_minutes``. Once it is usable
the video moves on to its script (if the template speaks one) or to ``ready``.
"""

from __future__ import annotations

import logging
import time

from watcher.config.templates import Template
from watcher.heygen.errors import ApiError, AuthError, RateLimited, TransientError
from watcher.heygen.v3direct import complete_v3
from watcher.pipeline.video_context import VIDEO_LOGGER, VideoContext
from watcher.state.journal import FileRow, VideoRow

log = logging.getLogger(VIDEO_LOGGER)

# Waiting for an asset HeyGen is still ingesting: the first look again after this long.
ASSET_CHECK_MIN_SECONDS = 1.0


def wait_for_asset(context: VideoContext, row: VideoRow, template: Template) -> bool:
    """One look at the asset; True when it became usable and the video's next step is due
    at once (the caller takes it)."""
    file_row = context.journal.get(row.path)
    if file_row is None or not file_row.asset_id:
        return False
    now = time.time()
    budget = template.timeout_minutes * 60
    deadline = row.deadline if row.deadline is not None else now + budget
    if now >= deadline:
        context.finish(
            row,
            "failed",
            error=(
                f"asset {file_row.asset_id} was still not usable after "
                f"{template.timeout_minutes:g} minutes"
            ),
        )
        return False
    try:
        usable = asset_usable(context, file_row)
    except (TransientError, RateLimited, AuthError) as error:
        log.info("asset status unavailable (%s)", error, extra={"file": row.path})
        usable = False
    except ApiError as error:
        context.finish(row, "failed", error=f"asset {file_row.asset_id} is not usable: {error}")
        return False
    if not usable:
        waited = now - (deadline - budget)
        delay = min(template.poll_interval_seconds, max(ASSET_CHECK_MIN_SECONDS, waited / 2))
        context.journal.update_video(row.path, deadline=deadline, next_at=now + delay)
        return False
    log.info("asset usable; the video goes ahead", extra={"file": row.path})
    script = row.script_path is not None and row.body is None
    context.journal.update_video(
        row.path,
        state="waiting_script" if script else "ready",
        deadline=now + template.script_wait_seconds if script else None,
        next_at=now,
    )
    return True


def asset_usable(context: VideoContext, file_row: FileRow) -> bool:
    """Ask HeyGen again whether the asset is usable. Only v3 direct uploads can be asked
    (their completion is idempotent and answers a status); for the others, waiting was
    all there was to do."""
    if file_row.protocol != "v3-direct" or not file_row.asset_id:
        return True
    return complete_v3(context.client, file_row.asset_id, file_row.sha256).usable
