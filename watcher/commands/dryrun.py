"""``heygen-watcher scan --dry-run``: what a scan would upload or refuse, and why; touching
nothing (no journal written, no sidecar, no lock, no claim, no request to the API)."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from watcher.config import Config
from watcher.intake import admission
from watcher.intake.admission import Outcome
from watcher.state.peek import read_only_fingerprints
from watcher.state.rows import adoptable_row
from watcher.state.tree import walk_files


@dataclass(frozen=True)
class Foreseen:
    action: str  # "upload", "convert", "refuse", "skip" or "done"
    path: str  # relative to its folder
    folder: Path
    reason: str


def foresee(config: Config) -> list[Foreseen]:
    known = read_only_fingerprints(config.journal_path)
    protocol = config.api.upload_protocol
    found: list[Foreseen] = []
    for folder in config.folders:
        root_length = len(str(folder.path)) + 1
        scripts = folder.template is not None
        for entry in walk_files(folder.path, folder.recursive):
            relative = entry.path[root_length:]
            if admission.screen_name(relative, folder.ignore, scripts=scripts):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            path = Path(entry.path)
            screened = admission.screen_stat(info)
            if screened is not None and screened.outcome is Outcome.IGNORE:
                continue
            if screened is not None and screened.outcome is Outcome.SKIP:
                found.append(Foreseen("skip", relative, folder.path, screened.reason))
                continue
            record = known.get(entry.path)
            if record is not None and record[:2] == (info.st_size, info.st_mtime_ns):
                found.append(Foreseen("done", relative, folder.path, f"journal: {record[2]}"))
                continue
            if (
                record is None
                and stat.S_ISREG(info.st_mode)
                and adoptable_row(path, folder, info) is not None
            ):
                found.append(Foreseen("done", relative, folder.path, "recorded in its sidecar"))
                continue
            verdict = admission.classify(path, info, folder, protocol)
            if verdict.outcome is Outcome.CONVERT:
                # The usual target: what the file holds is looked at when it is converted.
                reason = f"{verdict.detected_type} → {verdict.target_type}"
                found.append(Foreseen("convert", relative, folder.path, reason))
            elif verdict.outcome is Outcome.REJECT or verdict.content_type is None:
                found.append(Foreseen("refuse", relative, folder.path, verdict.reason))
            elif verdict.outcome is Outcome.SKIP:
                found.append(Foreseen("skip", relative, folder.path, verdict.reason))
            else:
                again = " (its bytes changed since the last upload)" if record else ""
                reason = verdict.content_type + again
                found.append(Foreseen("upload", relative, folder.path, reason))
    return found


_VERBS = {
    "upload": "would upload",
    "convert": "would convert",
    "refuse": "would refuse",
    "skip": "would skip",
}


def render(found: list[Foreseen]) -> tuple[list[str], str]:
    """Lines for stdout (what would happen, and why) and a one-line summary."""
    lines = [
        f"{_VERBS[item.action]}: {item.folder / item.path}: {item.reason}"
        for item in found
        if item.action in _VERBS
    ]
    counts = {action: sum(1 for item in found if item.action == action) for action in _VERBS}
    done = sum(1 for item in found if item.action == "done")
    converted = f" ({counts['convert']} converted first)" if counts["convert"] else ""
    summary = (
        f"dry run: {counts['upload'] + counts['convert']} would be uploaded{converted}, "
        f"{counts['refuse']} refused, "
        f"{counts['skip']} skipped, {done} already done; nothing was touched"
    )
    return lines, summary
