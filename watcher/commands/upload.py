"""``heygen-watcher upload``: sniff, upload and record a list of files given by hand."""

from __future__ import annotations

import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from watcher.config import Config
from watcher.config.mediatypes import DEFAULT_TYPES, PROTOCOL_TYPES
from watcher.heygen.body import FileChangedError, sha256_file
from watcher.heygen.errors import ApiError, AuthError
from watcher.heygen.uploads import LocalFile, UploadProtocol
from watcher.intake import admission
from watcher.intake.admission import Outcome
from watcher.pipeline import records
from watcher.state import sidecar

log = logging.getLogger(__name__)


@dataclass
class Report:
    path: Path
    document: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.document["status"])


class OneShotUploader:
    def __init__(self, config: Config, protocol: UploadProtocol) -> None:
        # Explicitly named files are judged by the `defaults` rules, widened to every type the
        # chosen protocol accepts unless `defaults.types` narrows them.
        types = config.defaults.types
        if types == DEFAULT_TYPES:
            types = PROTOCOL_TYPES[protocol.name]
        self.rules = replace(config.defaults, types=types)
        self.protocol = protocol
        self._auth_failure: AuthError | None = None
        self._lock = threading.Lock()

    def run(self, paths: list[Path], workers: int) -> list[Report]:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
            return list(pool.map(self.process, paths))

    def process(self, path: Path) -> Report:
        path = path.absolute()
        try:
            info = path.lstat()
        except OSError as error:
            return Report(path, records.failed(path, 0, f"cannot read: {error.strerror}"))
        verdict = admission.screen_stat(info)
        if verdict is not None and verdict.outcome is not Outcome.REJECT:
            return Report(path, records.failed(path, info.st_size, f"skipped: {verdict.reason}"))
        if verdict is None:
            verdict = admission.classify(path, info, self.rules, self.protocol.name)
        if verdict.outcome is Outcome.SKIP:
            return Report(path, records.failed(path, info.st_size, f"skipped: {verdict.reason}"))
        if verdict.outcome is Outcome.REJECT or verdict.content_type is None:
            accepted = admission.accepted_types(self.rules, self.protocol.name)
            return self._record(path, records.rejected(path, info, verdict, accepted))
        local = LocalFile(path, info.st_size, verdict.content_type, sha256_file(path))
        return self._upload(local, info.st_mtime_ns)

    def _upload(self, local: LocalFile, mtime_ns: int) -> Report:
        with self._lock:
            auth_failure = self._auth_failure
        if auth_failure is not None:
            return Report(local.path, records.failed(local.path, local.size, str(auth_failure)))
        try:
            asset = self.protocol.upload(local)
        except AuthError as error:
            with self._lock:
                self._auth_failure = self._auth_failure or error
            # Not the file's fault: no sidecar, so nothing marks the file as failed.
            return Report(local.path, records.failed(local.path, local.size, str(error), local))
        except (ApiError, FileChangedError) as error:
            return self._record(
                local.path, records.failed(local.path, local.size, str(error), local)
            )
        return self._record(local.path, records.uploaded(local, asset, mtime_ns=mtime_ns))

    def _record(self, path: Path, document: dict[str, Any]) -> Report:
        try:
            sidecar.write(sidecar.sidecar_path(path), document)
        except OSError as error:
            document = {**document, "sidecar_error": f"cannot write sidecar: {error.strerror}"}
        return Report(path, document)

    @property
    def auth_failure(self) -> AuthError | None:
        return self._auth_failure


def print_reports(reports: list[Report]) -> None:
    for report in reports:
        line = {"path": str(report.path), **report.document}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def summary(reports: list[Report]) -> str:
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.status] = counts.get(report.status, 0) + 1
    parts = [f"{count} {status}" for status, count in sorted(counts.items())]
    return f"{len(reports)} file{'s' if len(reports) != 1 else ''}: " + ", ".join(parts)


def exit_code(reports: list[Report]) -> int:
    return 0 if all(r.status == "uploaded" for r in reports) else 1
