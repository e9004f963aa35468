"""``heygen-watcher retry [PATH...]``: retry what failed (or the paths given), and nothing else.

Each path given that is not retried says why (unknown to the journal, already uploaded, in
progress, rejected). While a daemon runs on the same state directory it does the work (the
rows are marked due in the journal); otherwise this command does it and waits. Either way an
uploaded file's sidecar that went missing is written again from the journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from watcher.state.journal_api import Journal
from watcher.state.states import FileState

# Files and videos `retry` takes up.
RETRIED_FILE_STATES = (FileState.FAILED, FileState.RETRYING, FileState.HELD)
RETRIED_VIDEO_STATES = ("unknown", "failed", "timed_out")


@dataclass(frozen=True)
class Verdict:
    path: str
    retried: bool
    reason: str


def judge(journal: Journal, path: str) -> Verdict:
    """Will ``path`` be retried, and if not, why not."""
    row = journal.get(path)
    video = journal.video(path)
    if video is not None and video.state in RETRIED_VIDEO_STATES:
        return Verdict(path, True, f"its video ({video.state}) is generated again")
    if row is None:
        return Verdict(path, False, "unknown to the journal (never seen with this state_dir)")
    if row.state in RETRIED_FILE_STATES:
        return Verdict(path, True, f"{row.state}: {row.last_error or 'no reason recorded'}")
    if row.state is FileState.UPLOADED:
        return Verdict(path, False, f"already uploaded as {row.asset_id}")
    if row.state is FileState.REJECTED:
        return Verdict(path, False, f"rejected ({row.last_error}); a changed file is judged again")
    return Verdict(path, False, f"in progress ({row.state})")


def retried_paths(journal: Journal) -> list[str]:
    """The files (and videos) a retry with no paths takes up: every one that qualifies."""
    rows = [row.path for row in journal.rows_in(RETRIED_FILE_STATES)]
    videos = [video.path for video in journal.videos_in(RETRIED_VIDEO_STATES)]
    return sorted(set(rows) | set(videos))


def absolute(names: list[str]) -> list[str] | None:
    return [str(Path(name).absolute()) for name in names] or None
