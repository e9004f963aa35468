"""Waiting for a video's script: the ``<stem>.txt`` beside the file, read (bounded) once it
appears, then handed to the submission; a script that never comes fails the video after the
template's ``script_wait_seconds``."""

from __future__ import annotations

import time
from pathlib import Path

from watcher.config.regularfile import NotRegularFile, ReadLimitExceeded, read_regular
from watcher.config.templates import Template
from watcher.pipeline.video_context import VideoContext
from watcher.pipeline.video_submit import prepare
from watcher.state.journal import VideoRow

SCRIPT_CHECK_SECONDS = 0.25
# A script is text to be spoken: 64 KiB is far more than any video takes.
MAX_SCRIPT_BYTES = 64 * 1024


def script_path_for(media: Path) -> Path:
    return media.with_name(media.stem + ".txt")


def look_for_script(context: VideoContext, row: VideoRow, template: Template) -> None:
    script_path = Path(row.script_path or "")
    try:
        script = read_regular(script_path, MAX_SCRIPT_BYTES).decode("utf-8").strip()
    except (NotRegularFile, ReadLimitExceeded) as error:
        # Planted or oversized: refused with the reason, never read without a bound.
        context.finish(row, "failed", error=f"script {script_path.name} refused: {error.reason}")
        return
    except FileNotFoundError:
        deadline = row.deadline or time.time() + template.script_wait_seconds
        if time.time() >= deadline:
            context.finish(
                row,
                "failed",
                error=(
                    f"script {script_path.name} did not appear beside the file within "
                    f"{template.script_wait_seconds:g}s"
                ),
            )
        else:
            context.journal.update_video(
                row.path, deadline=deadline, next_at=time.time() + SCRIPT_CHECK_SECONDS
            )
        return
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        context.finish(row, "failed", error=f"cannot read script {script_path.name}: {reason}")
        return
    prepare(context, row, template, script)
