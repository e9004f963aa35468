"""``heygen-watcher status``: what the journal says, readable while the daemon runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from watcher.config import Config
from watcher.config.notifyconfig import masked_url
from watcher.pipeline.video_fetch import UNSAVED_PREFIX
from watcher.state.journals import journal_label, open_journal
from watcher.state.lock import StateLock
from watcher.state.sidecar import iso_from_epoch
from watcher.state.states import FileState


def collect(config: Config) -> dict[str, Any]:
    label = journal_label(config)
    running = StateLock(config.state_dir).held_by_other()
    if config.journal_url is None and not config.journal_path.exists():
        # Before the first run: the same report with nothing in it (and nothing created).
        return {
            "journal": label,
            "running": running,
            "counts": dict.fromkeys(FileState, 0),
            "oldest_waiting_seconds": None,
            "recent_failures": [],
            "paused": False,
            "pause_reason": None,
            "videos": {},
            "videos_paused_reason": None,
            "api_unreachable": None,
            "unwritten_sidecars": [],
            "unsaved_videos": [],
            "shortened_sidecars": [],
            "daemons": [],
            "conversions_running": 0,
            "notifications": {},
            "dead_notifications": [],
        }
    journal = open_journal(config)
    try:
        daemons = journal.daemons()
        # A shared journal's daemons run elsewhere too: alive while their heartbeats are fresh.
        fresh = [d for d in daemons if d.heartbeat_age <= 3 * config.lease_seconds]
        running = running or bool(fresh)
        counts = journal.counts()
        oldest = journal.oldest_waiting()
        failures = journal.recent_failures()
        pause_reason = journal.get_meta("uploads_paused") if running else None
        video_counts = journal.video_counts()
        videos_paused = journal.get_meta("videos_paused") if running else None
        unreachable = journal.get_meta("api_unreachable") if running else None
        unwritten = journal.pending_sidecars()
        unsaved = [
            video
            for video in journal.videos_in(("downloading",))
            if video.error and video.error.startswith(UNSAVED_PREFIX)
        ]
        shortened = journal.shortened_sidecars()
        converting = journal.conversions_running() if running else 0
        notifications = journal.outbox_counts()
        dead = journal.dead_events()
    finally:
        journal.close()
    return {
        "notifications": notifications,
        "dead_notifications": [
            {
                "target": masked_url(event.target),
                "event": event.event,
                "file": event.path,
                "error": event.last_error,
                "attempts": event.attempts,
            }
            for event in dead
        ],
        "conversions_running": converting,
        "journal": label,
        "running": running,
        "counts": {state: counts.get(state, 0) for state in FileState},
        "oldest_waiting_seconds": round(time.time() - oldest, 1) if oldest else None,
        "recent_failures": [
            {
                "path": row.path,
                "folder": row.folder,
                "relative_path": relative_to_folder(row.path, row.folder),
                "state": row.state,
                "error": row.last_error,
                "attempts": row.attempts,
                "next_attempt_at": iso_from_epoch(row.next_attempt_at)
                if row.next_attempt_at
                else None,
            }
            for row in failures
        ],
        "paused": pause_reason is not None,
        "pause_reason": pause_reason,
        "videos": video_counts,
        "videos_paused_reason": videos_paused,
        # {"since", "last_error", "probes"} while the API does not answer, else null.
        "api_unreachable": unreachable,
        # Sidecars decided but not yet written (a full disk…): where, why, when next tried.
        "unwritten_sidecars": [
            {
                "sidecar": pending.location,
                "error": pending.reason,
                "failures": pending.failures,
                "next_attempt_at": iso_from_epoch(pending.next_at),
            }
            for pending in unwritten
        ],
        # Finished videos that could not be saved yet (a full disk…): retried within seconds.
        "unsaved_videos": [
            {
                "path": video.path,
                "error": video.error,
                "next_attempt_at": iso_from_epoch(video.next_at) if video.next_at else None,
            }
            for video in unsaved
        ],
        # Names too long for `<name>.asset.json`: where their sidecars are (README: Long names).
        "shortened_sidecars": [{"path": path, "sidecar": side} for path, side in shortened],
        "daemons": [
            {
                "host": daemon.host,
                "pid": daemon.pid,
                "version": daemon.version,
                "started_at": iso_from_epoch(daemon.started_at),
                "heartbeat_seconds_ago": round(daemon.heartbeat_age, 1),
                "in_flight": daemon.in_flight,
            }
            for daemon in fresh
        ],
    }


def relative_to_folder(path: str, folder: str) -> str:
    """A file's path as its folder's users know it (``sub/clip.mp4``); absolute outside it."""
    file = Path(path)
    return str(file.relative_to(folder)) if file.is_relative_to(folder) else path


def render(report: dict[str, Any]) -> str:
    running = "daemon running" if report["running"] else "no daemon running"
    lines = [f"journal: {report['journal']} ({running})"]
    counts = report["counts"]
    lines.append(
        "files: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        if any(counts.values())
        else "files: none yet"
    )
    for daemon in report.get("daemons", []):
        lines.append(
            f"  daemon {daemon['host']} pid {daemon['pid']} (v{daemon['version']}): "
            f"heartbeat {daemon['heartbeat_seconds_ago']:.0f}s ago, "
            f"{daemon['in_flight']} in flight"
        )
    waiting = report.get("notifications", {})
    if waiting.get("pending") or waiting.get("dead"):
        lines.append(
            f"notifications: {waiting.get('pending', 0)} pending, {waiting.get('dead', 0)} dead"
        )
    for dead in report.get("dead_notifications", []):
        lines.append(
            f"  dead notification to {dead['target']} ({dead['event']} of {dead['file']}): "
            f"{dead['error']}"
        )
    if report.get("conversions_running"):
        lines.append(f"converting now: {report['conversions_running']} file(s)")
    if report["oldest_waiting_seconds"] is not None:
        lines.append(f"oldest waiting: {report['oldest_waiting_seconds']:.0f}s")
    if report["paused"]:
        lines.append(f"uploads PAUSED: {report['pause_reason']}")
    if report.get("api_unreachable"):
        outage = report["api_unreachable"]
        lines.append(f"API UNREACHABLE since {outage['since']}: {outage['last_error']}")
    if report["videos"]:
        lines.append("videos: " + ", ".join(f"{n} {s}" for s, n in report["videos"].items()))
    if report["videos_paused_reason"]:
        lines.append(f"video generation PAUSED: {report['videos_paused_reason']}")
    for pending in report.get("unwritten_sidecars", []):
        lines.append(
            f"  sidecar not written yet: {pending['sidecar']}: {pending['error']} "
            f"(next try {pending['next_attempt_at']})"
        )
    for video in report.get("unsaved_videos", []):
        lines.append(
            f"  video not saved yet: {video['path']}: {video['error']} "
            f"(next try {video['next_attempt_at']})"
        )
    for entry in report.get("shortened_sidecars", []):
        lines.append(f"  long name, sidecar at: {entry['sidecar']}")
    for failure in report["recent_failures"]:
        when = f", next try {failure['next_attempt_at']}" if failure["next_attempt_at"] else ""
        lines.append(
            f"  {failure['state']}: {failure['relative_path']}: {failure['error']} "
            f"(attempts {failure['attempts']}{when})"
        )
    return "\n".join(lines)
