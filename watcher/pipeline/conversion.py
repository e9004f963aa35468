"""The conversion stage: what HeyGen refuses is converted before it is sent, the original
left as it is.

At admission the Taker asks `ConvertStep.judge` what a file becomes (the converter looks
inside it); the plan is committed to the journal keyed by the original's sha256, so the asset
cache knows identical bytes were converted (and uploaded) once. The Uploader then asks
`prepare` for the bytes to send: written under ``state_dir/converting/`` (never in a drop
folder, where a watch would see them), reused if a previous attempt of this process left
them complete, and removed by `discard` once the upload is recorded. What a restart finds
there is a leftover of a process that died: removed at start (`clean_leftovers`), and
converted again only for a file whose upload was not recorded.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.config.mediatypes import TYPE_NAMES
from watcher.convert.converter import ConversionFailed, Converter, ConverterMissing, Plan
from watcher.convert.ffmpeg import ConversionStopped
from watcher.convert.targets import JPEG, MP3, MP4, PNG, WAV
from watcher.heygen.body import FileChangedError, sha256_file
from watcher.heygen.uploadfile import LocalFile
from watcher.intake.admission import Decision, Outcome, accepted_types
from watcher.state.journal import ConversionRow, FileRow
from watcher.state.journal_api import Journal
from watcher.state.states import FINAL, FileState

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
WORK_DIR = "converting"
# Plans kept in memory between admission and conversion (each a few numbers).
PLANS_KEPT = 1024
_SUFFIXES = {JPEG: ".jpg", PNG: ".png", MP4: ".mp4", MP3: ".mp3", WAV: ".wav"}


class ConversionRefused(Exception):
    """This file cannot be converted (the tool's reason, or no tool): refuse it."""


# What a tool says when the fault is the machine's, not the file's: retried, never refused.
_LOCAL_FAULTS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
}


def _local_fault(reason: str) -> OSError | None:
    for words, number in _LOCAL_FAULTS.items():
        if words in reason:
            return OSError(number, f"cannot write the converted file: {reason}")
    return None


def _since(started: float) -> float:
    return time.monotonic() - started


class ConvertStep:
    def __init__(
        self,
        journal: Journal,
        live: LiveConfig,
        converter: Converter,
        work_dir: Path,
        on_event: EventSink,
        *,
        checksum_first: bool = False,
    ) -> None:
        self.checksum_first = checksum_first
        self.journal = journal
        self.live = live
        self.converter = converter
        self.work_dir = work_dir
        self.on_event = on_event
        # Plans made at admission by this process, until their conversion: spares a second
        # look inside the file (after a restart, the file is looked at again).
        # Bounded: a plan whose file is never converted (its asset reused) must not stay.
        self._plans: OrderedDict[tuple[str, str], Plan] = OrderedDict()
        self._plans_lock = threading.Lock()

    # -- at start and stop -------------------------------------------------------------------
    def clean_leftovers(self) -> int:
        """Converted bytes a previous process left behind (it died before their upload was
        recorded, or before it removed them); how many were removed."""
        removed = 0
        if self.work_dir.is_dir():
            for entry in self.work_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        self.journal.clear_running_conversions()
        if removed:
            log.info("removed %d converted file(s) left by an earlier run", removed)
        return removed

    def stop(self) -> None:
        self.converter.stop()

    # -- admission ---------------------------------------------------------------------------
    def judge(self, path: Path, folder: FolderConfig, verdict: Decision) -> Decision:
        """The decision for a file the folder converts: ACCEPT as the target type (its
        ``detected_type`` the original's), ACCEPT as it is (an MP4 already H.264), or REJECT
        with the converter's reason. `ConversionStopped` when the daemon is stopping."""
        source_type = verdict.detected_type or ""
        accepted = accepted_types(folder, self.live.current.api.upload_protocol)
        try:
            plan = self.converter.plan(path, source_type, accepted)
        except (ConversionFailed, ConverterMissing) as error:
            if verdict.outcome is Outcome.ACCEPT:
                # An MP4 whose codec could not be looked at: uploaded as it is, as a folder
                # that does not convert would.
                return replace(verdict, target_type=None)
            what = TYPE_NAMES.get(source_type, source_type)
            return Decision(
                Outcome.REJECT, f"cannot convert {what}: {error}", detected_type=source_type
            )
        if plan is None:
            return replace(verdict, target_type=None)
        return Decision(
            Outcome.ACCEPT,
            content_type=plan.target_type,
            detected_type=source_type,
            target_type=plan.target_type,
            plan=plan,
        )

    def plan(self, sha256: str, decision: Decision, size: int) -> None:
        """Commit the plan of an admitted file (before its row: a row never lacks its plan)."""
        target_type, source_type = decision.content_type or "", decision.detected_type or ""
        self.journal.plan_conversion(sha256, target_type, source_type, size)
        if decision.plan is not None:
            with self._plans_lock:
                self._plans[(sha256, target_type)] = decision.plan
                while len(self._plans) > PLANS_KEPT:
                    self._plans.popitem(last=False)

    # -- the upload's bytes ------------------------------------------------------------------
    def pending(self, row: FileRow) -> ConversionRow | None:
        """The conversion a row's bytes need before they are sent; None: sent as they are."""
        if row.sha256 is None or row.content_type is None:
            return None
        return self.journal.conversion(row.sha256, row.content_type)

    def prepare(self, row: FileRow, conversion: ConversionRow) -> LocalFile:
        """The converted bytes of ``row``'s file, ready to send. `ConversionRefused` when the
        converter cannot make them, `ConversionStopped` when the daemon stops meanwhile,
        `FileChangedError` when the original changed; OSError for a local fault (retried)."""
        target_type = conversion.target_type
        target = self._output_path(row, target_type)
        reused = self._complete(target, conversion)
        if reused is not None:
            return reused
        self.on_event("converting", {"running": self.converter.in_progress + 1})
        try:
            return self._convert(row, conversion, target)
        except BaseException:
            # Refused, failed or cut short: no half-written output stays behind.
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        finally:
            self.on_event("converting", {"running": self.converter.in_progress})

    def _convert(self, row: FileRow, conversion: ConversionRow, target: Path) -> LocalFile:
        target_type = conversion.target_type
        original = Path(row.path)
        key = (conversion.source_sha256, target_type)
        started = time.monotonic()
        self.journal.start_conversion(*key)
        try:
            with self._plans_lock:
                plan = self._plans.pop(key, None)
            if plan is None:
                # Planned by an earlier process: only what it becomes was kept, so look again.
                plan = self.converter.plan(original, conversion.source_type, (target_type,))
            if plan is None:
                raise ConversionFailed(f"nothing to convert: it is {target_type} already")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            done = self.converter.convert(original, plan, partial)
            os.replace(partial, target)
        except ConversionStopped:
            self.journal.stop_conversion(*key)
            raise
        except (ConversionFailed, ConverterMissing) as error:
            self.journal.stop_conversion(*key)
            if not original.exists():
                raise FileNotFoundError(
                    f"{original} vanished while it was being converted"
                ) from None
            local = _local_fault(str(error))
            if local is not None:
                raise local from None
            self.on_event("converted", {"result": "refused", "seconds": _since(started)})
            raise ConversionRefused(str(error)) from None
        except OSError:
            self.journal.stop_conversion(*key)
            self.on_event("converted", {"result": "failed", "seconds": _since(started)})
            raise
        info = original.lstat()
        if not row.same_file(info.st_size, info.st_mtime_ns, info.st_ino):
            self.journal.stop_conversion(*key)
            raise FileChangedError("the file changed while it was being converted")
        size = target.stat().st_size
        # A protocol that signs the checksum needs it now; the others hash the bytes as they
        # send them (one read, not two), and `sent` records it.
        digest = sha256_file(target) if self.checksum_first else None
        self.journal.finish_conversion(
            *key,
            output_sha256=digest,
            output_size=size,
            action=done.action,
            tool=done.tool,
            tool_version=done.tool_version,
        )
        seconds = _since(started)
        self.on_event("converted", {"result": done.action, "seconds": seconds})
        log.info(
            "converted %s → %s (%s with %s) in %.1fs",
            conversion.source_type,
            target_type,
            done.action,
            done.tool,
            seconds,
            extra={"file": row.path},
        )
        folder = self.live.current.folder_of(row.folder)
        limit = folder.max_bytes_for(target_type)
        if limit is not None and size > limit:
            raise ConversionRefused(
                f"too large once converted: {size} bytes of {target_type}, the limit for "
                f"{target_type.split('/')[0]} is {limit}"
            )
        return LocalFile(target, size, target_type, digest)

    def _complete(self, target: Path, conversion: ConversionRow) -> LocalFile | None:
        """The output an earlier attempt of this process finished, if it is still whole (an
        output only ever appears whole: it is renamed into place; leftovers of an earlier
        process are gone since the start)."""
        if conversion.output_size is None or conversion.converted_at is None:
            return None
        try:
            if target.stat().st_size != conversion.output_size:
                return None
            digest = conversion.output_sha256
            if digest is not None and sha256_file(target) != digest:
                return None
            if digest is None and self.checksum_first:
                digest = sha256_file(target)
        except (OSError, FileChangedError):
            return None
        return LocalFile(target, conversion.output_size, conversion.target_type, digest)

    def sent(self, row: FileRow, conversion: ConversionRow, sha256: str | None) -> None:
        """The converted bytes went up, hashed on the way: their sha256 is recorded (before
        the asset is: the sidecar names both)."""
        if sha256 is not None and conversion.output_sha256 is None:
            self.journal.set_conversion_output(
                conversion.source_sha256, conversion.target_type, sha256
            )

    def _output_path(self, row: FileRow, target_type: str) -> Path:
        # One folder per file (by its path), holding the original's name with the new suffix:
        # the name HeyGen is told is the user's, and two files never share an output.
        key = hashlib.sha256(row.path.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        name = Path(row.path).stem + _SUFFIXES.get(target_type, "")
        return self.work_dir / key / name

    def discard_if_done(self, row: FileRow) -> None:
        """After a failed attempt: the converted bytes go too if the file's fate is decided
        (failed for good, refused, or gone); a retry to come reuses them."""
        now = self.journal.get(row.path)
        if now is None or now.state in (FileState.FAILED, *FINAL):
            self.discard(row)

    def discard(self, row: FileRow) -> None:
        """The upload is recorded: its converted bytes are not needed any more."""
        target = self._output_path(row, row.content_type or "")
        shutil.rmtree(target.parent, ignore_errors=True)
