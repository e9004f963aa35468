"""Rows of the journal handed back to the workers: what a previous process left mid-way,
retries and video steps that are due, and files a command handed over.

Every door into the pool from the journal is here, so a row resumes the same way whichever
door it comes through (each with its folder, and its row so the work carries on from it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.heygen.reachability import Reachability
from watcher.pipeline.handpicked import folder_for_file
from watcher.pipeline.pipeline import Pipeline
from watcher.state.journal import FileRow
from watcher.state.journal_api import Journal
from watcher.state.states import DUE, FileState

log = logging.getLogger(__name__)

# Rows a previous process left mid-way, picked up again at start.
RESUMED_STATES = (FileState.QUEUED, FileState.UPLOADING, FileState.RECORDING, FileState.HELD)


class Resumer:
    def __init__(
        self,
        live: LiveConfig,
        journal: Journal,
        pipeline: Pipeline,
        reachability: Reachability,
        scan_folder: Callable[[Path, FolderConfig], None],
    ) -> None:
        self.live = live
        self.journal = journal
        self.pipeline = pipeline
        self.reachability = reachability
        self._scan_folder = scan_folder

    def resume_unfinished(self) -> None:
        """Rows a previous process left mid-way, and failures worth another go at start."""
        for row in self.journal.rows_in((FileState.FAILED,)):
            self.journal.update(
                row.path, state=FileState.RETRYING, attempts=0, next_attempt_at=time.time()
            )
        self.resubmit(self.journal.rows_in(RESUMED_STATES))
        self.submit_due()

    def resume_held(self) -> None:
        """Files held while uploads were paused (an outage, a refused key)."""
        self.resubmit(self.journal.rows_in((FileState.HELD,)))

    def resubmit(self, rows: Iterable[FileRow]) -> None:
        """Hand rows of the journal back to the pool, each with its folder."""
        config = self.live.current
        for row in rows:
            self.pipeline.pool.submit(Path(row.path), config.folder_of(row.folder), row=row)

    def submit_due(self, only: Collection[str] | None = None) -> None:
        """Hand due retries (and video steps) to the pool; ``only`` these paths if given
        (`retry PATH` retries what it was asked to and nothing else)."""
        now = time.time()
        self.resubmit(row for row in self.journal.due(now) if only is None or row.path in only)
        # While the API is unreachable, videos wait (due) for the probe that finds it back.
        for key in [] if self.reachability.down else self.journal.due_videos(now):
            if only is None or key in only:
                self.pipeline.video_runner.submit(key)
        self.pipeline.sidecars.retry_due(now)

    def take_requests(self) -> None:
        """Files a command (`upload`, `scan`) handed to this daemon through the journal."""
        config = self.live.current
        configured = {folder.path: folder for folder in config.folders}
        for key, _folder in self.journal.take_requests():
            path = Path(key)
            if path in configured:
                log.info("scan requested by a command", extra={"folder": key})
                self._scan_folder(path, configured[path])
                continue
            row = self.journal.get(key)
            resume = row if row is not None and row.state in (FileState.QUEUED, *DUE) else None
            self.pipeline.pool.submit(path, folder_for_file(config, path), row=resume)
