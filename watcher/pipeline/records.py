"""Sidecar documents for each way a file can end: uploaded, rejected, failed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from watcher.heygen.uploadfile import LocalFile, UploadedAsset
from watcher.intake.admission import Decision
from watcher.state import sidecar
from watcher.state.journal import ConversionRow, FileRow

# Where a failed file's sidecar points its reader.
RETRY_HINT = "at the next start of the daemon, or with `heygen-watcher retry`"


def uploaded(
    local: LocalFile, asset: UploadedAsset, *, uploaded_at: str | None = None, **extra: Any
) -> dict[str, Any]:
    return sidecar.build(
        status="uploaded",
        file=local.path,
        size=local.size,
        sha256=local.sha256,
        content_type=local.content_type,
        asset_id=asset.asset_id,
        url=asset.url,
        protocol=asset.protocol,
        uploaded_at=uploaded_at or sidecar.utc_now_iso(),
        **extra,
    )


def converted_from(conversion: ConversionRow) -> dict[str, Any]:
    """The sidecar's `converted_from`: the original's type, bytes and what was done."""
    return {
        "content_type": conversion.source_type,
        "sha256": conversion.source_sha256,
        "size": conversion.source_size,
        "action": conversion.action,
        "tool": conversion.tool,
        "tool_version": conversion.tool_version,
    }


def rejected(
    path: Path, info: os.stat_result, decision: Decision, allowed: tuple[str, ...]
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if decision.detected_type is not None:
        extra = {"detected_type": decision.detected_type, "allowed_types": list(allowed)}
    return sidecar.build(
        status="rejected",
        file=path,
        size=info.st_size,
        error=decision.reason,
        mtime_ns=info.st_mtime_ns,
        **extra,
    )


def rejected_from_row(row: FileRow, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The rejection sidecar `rejected` wrote, rebuilt from the journal's row (which keeps
    the reason and the detected type): a lost one is written again without sniffing."""
    extra: dict[str, Any] = {}
    if row.content_type is not None:
        extra = {"detected_type": row.content_type, "allowed_types": list(allowed)}
    return sidecar.build(
        status="rejected",
        file=Path(row.path),
        size=row.size,
        error=row.last_error,
        mtime_ns=row.mtime_ns,
        **extra,
    )


def failed_from_row(row: FileRow) -> dict[str, Any]:
    """The sidecar of a file that failed for good, from its journal row."""
    local = LocalFile(Path(row.path), row.size, row.content_type or "", row.sha256 or "")
    return failed(
        Path(row.path),
        row.size,
        row.last_error or "failed",
        local,
        attempts=row.attempts,
        retry=RETRY_HINT,
        mtime_ns=row.mtime_ns,
    )


def failed(
    path: Path, size: int, error: str, local: LocalFile | None = None, **extra: Any
) -> dict[str, Any]:
    return sidecar.build(
        status="failed",
        file=path,
        size=size,
        sha256=local.sha256 if local else None,
        content_type=local.content_type if local else None,
        error=error,
        **extra,
    )
