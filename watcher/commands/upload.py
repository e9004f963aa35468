"""``heygen-watcher upload``: files named by hand, through the same journal, state-directory lock
and asset cache as the daemon.

A file already uploaded (same size, mtime and inode as the journal recorded) is reported with
its existing asset; ``--force`` uploads it again and the new sidecar keeps `previous_asset_id`.
While a daemon runs on the same state directory, the files are handed to it through the journal
and this command waits for their outcome instead of racing it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from watcher.config import Config, FolderConfig
from watcher.config.live import LiveConfig
from watcher.heygen.body import sha256_file
from watcher.intake import admission
from watcher.intake.admission import Outcome
from watcher.pipeline import records
from watcher.pipeline.handpicked import folder_for_file
from watcher.pipeline.outcome import OutcomePolicy
from watcher.pipeline.record import Sidecars
from watcher.state import sidecar
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal
from watcher.state.placement import moved_path, sidecar_for
from watcher.state.rows import new_row
from watcher.state.states import FileState

log = logging.getLogger(__name__)

# Still on its way (in this pass, or in the daemon's hands).
_IN_FLIGHT = (FileState.QUEUED, FileState.UPLOADING, FileState.RECORDING)
HANDOFF_WAIT_SECONDS = 600.0


@dataclass
class Report:
    path: Path
    document: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.document["status"])


@dataclass
class Plan:
    """What this command does with one named file."""

    path: Path
    folder: FolderConfig
    report: Report | None = None  # decided without sending anything (skipped, already done)
    resume: FileRow | None = None  # a journal row to carry on from
    asked_at: float = 0.0


def plan(config: Config, journal: Journal, sidecars: Sidecars, name: str, *, force: bool) -> Plan:
    path = Path(name).absolute()
    folder = folder_for_file(config, path)
    try:
        info = path.lstat()
    except OSError as error:
        reason = f"cannot read: {error.strerror or error}"
        return Plan(path, folder, Report(path, records.failed(path, 0, reason)))
    verdict = admission.screen_stat(info)
    if verdict is None:
        relative = path.relative_to(folder.path)
        verdict = admission.screen_name(
            relative, folder.ignore, scripts=folder.template is not None
        )
    if verdict is not None and verdict.outcome is not Outcome.REJECT:
        document = records.failed(path, info.st_size, f"skipped: {verdict.reason}")
        return Plan(path, folder, Report(path, document))
    row = journal.get(str(path))
    if row is None or not row.same_file(info.st_size, info.st_mtime_ns, info.st_ino):
        return Plan(path, folder)  # new, or new bytes: the pipeline decides
    if row.state is FileState.UPLOADED and not force:
        document = sidecars.uploaded_document(row) or {}
        return Plan(path, folder, Report(path, {**document, "already_uploaded": True}))
    if row.state is FileState.UPLOADED:
        return Plan(path, folder, resume=_forced(journal, row))
    if row.state is FileState.REJECTED:
        # Judged again: the rules for files named by hand (or the protocol) may take it now.
        verdict = admission.classify(path, info, folder, config.api.upload_protocol)
        if verdict.outcome is Outcome.CONVERT or verdict.target_type is not None:
            # The folder converts it now: judged afresh by the pipeline, converter and all.
            journal.forget(str(path))
            return Plan(path, folder)
        if verdict.outcome is Outcome.REJECT or verdict.content_type is None:
            return Plan(path, folder, Report(path, _document_of(row, folder)))
        admitted = new_row(
            path,
            folder,
            info,
            time.time(),
            FileState.QUEUED,
            sha256=sha256_file(path),
            content_type=verdict.content_type,
        )
        journal.put(admitted)
        return Plan(path, folder, resume=admitted)
    if row.state in (FileState.FAILED, FileState.RETRYING):
        journal.mark_for_retry([str(path)])
    return Plan(path, folder, resume=journal.get(str(path)))


def _forced(journal: Journal, row: FileRow) -> FileRow:
    """Same bytes, uploaded again on purpose: a fresh life that remembers the old asset (the
    cache never hands that asset back)."""
    now = time.time()
    fresh = replace(
        row,
        state=FileState.QUEUED,
        previous_asset_id=row.asset_id,
        asset_id=None,
        asset_url=None,
        protocol=None,
        reused=0,
        slot=None,
        slot_expires_at=None,
        attempts=0,
        next_attempt_at=None,
        last_error=None,
        created_at=now,
        updated_at=now,
    )
    journal.put(fresh)
    return fresh


def outcome_of(
    journal: Journal, sidecars: Sidecars, item: Plan, outcome: OutcomePolicy | None
) -> Report:
    """What became of a submitted file, from the journal (and its sidecar). With ``outcome``
    (this command did the work), a file left waiting for a later retry is given up on now,
    with a `failed` sidecar: `upload` is one pass; `retry` or the daemon tries it again."""
    path = item.path
    row = _current_row(journal, item)
    if row is None:
        document = sidecar.read(sidecar_for(path, item.folder))
        return Report(path, document or records.failed(path, 0, "vanished before its upload"))
    if row.state is FileState.RETRYING and outcome is not None:
        outcome.fail(row, row.last_error or "upload failed", final=True)
        row = journal.get(row.path) or row
    if row.state is FileState.UPLOADED:
        return Report(path, sidecars.uploaded_document(row) or _document_of(row, item.folder))
    return Report(path, _document_of(row, item.folder))


def _document_of(row: FileRow, folder: FolderConfig) -> dict[str, Any]:
    path = Path(row.path)
    if row.state in (FileState.REJECTED, FileState.FAILED):
        written = sidecar.read(sidecar_for(path, folder))
        if written is not None and written.get("status") == row.state:
            return written
        if row.state is FileState.REJECTED:
            return sidecar.build(status="rejected", file=path, size=row.size, error=row.last_error)
    document = records.failed(path, row.size, row.last_error or str(row.state))
    if row.state is not FileState.FAILED:
        document["state"] = str(row.state)  # held for the key, or still in the daemon's hands
    return document


def standalone_sidecars(config: Config, journal: Journal) -> Sidecars:
    return Sidecars(journal, LiveConfig(config), lambda kind, details: None)


def wait_for_daemon(journal: Journal, items: list[Plan], timeout: float) -> None:
    """Until the running daemon has dealt with every handed file (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    pending = [item for item in items if item.report is None]
    while pending and time.monotonic() < deadline:
        pending = [item for item in pending if not _dealt_with(journal, item)]
        if pending:
            time.sleep(0.1)


def _current_row(journal: Journal, item: Plan) -> FileRow | None:
    """The file's row where it was dropped, or where its folder moved it once done."""
    row = journal.get(str(item.path))
    if row is None:
        target = moved_path(item.path, item.folder)
        row = journal.get(str(target)) if target is not None else None
    return row


def _dealt_with(journal: Journal, item: Plan) -> bool:
    row = _current_row(journal, item)
    return row is not None and row.updated_at >= item.asked_at and row.state not in _IN_FLIGHT


def print_reports(reports: list[Report]) -> None:
    for report in reports:
        line = {"path": str(report.path), **report.document}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def summary(reports: list[Report]) -> str:
    counts: dict[str, int] = {}
    for report in reports:
        status = "already uploaded" if report.document.get("already_uploaded") else report.status
        counts[status] = counts.get(status, 0) + 1
    parts = [f"{count} {status}" for status, count in sorted(counts.items())]
    return f"{len(reports)} file{'s' if len(reports) != 1 else ''}: " + ", ".join(parts)


def exit_code(reports: list[Report]) -> int:
    return 0 if all(r.status == "uploaded" for r in reports) else 1
