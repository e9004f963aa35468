"""The user-facing record of what happened to a file: ``<name>.asset.json`` beside it.

Written atomically (temp file in the same folder, fsync, rename) so a reader, or a crash,
never sees half a sidecar. The temp name starts with a dot, which the watcher ignores.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "heygen-watcher/asset/v1"
SUFFIX = ".asset.json"
STATUSES = ("uploaded", "rejected", "failed")


def utc_now_iso() -> str:
    return iso_from_epoch(time.time())


def iso_from_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def is_sidecar_name(name: str) -> bool:
    return name.endswith(SUFFIX) or (SUFFIX + ".tmp") in name


def sidecar_path(file: Path, root: Path | None = None, sidecar_dir: Path | None = None) -> Path:
    """``<file>.asset.json`` beside the file, or at the same relative place under
    ``sidecar_dir`` (for read-only drop folders)."""
    if sidecar_dir is None or root is None:
        return file.with_name(file.name + SUFFIX)
    relative = file.relative_to(root)
    return sidecar_dir / relative.parent / (relative.name + SUFFIX)


def build(
    *,
    status: str,
    file: Path,
    size: int | None,
    sha256: str | None = None,
    content_type: str | None = None,
    asset_id: str | None = None,
    url: str | None = None,
    protocol: str | None = None,
    uploaded_at: str | None = None,
    error: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A sidecar document; ``None`` fields are left out, ``extra`` adds fields such as
    ``reused``, ``previous_asset_id``, ``detected_type``, ``allowed_types``, ``video``."""
    if status not in STATUSES:
        raise ValueError(f"unknown sidecar status {status!r}")
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "status": status,
        "file": file.name,
        "size": size,
        "sha256": sha256,
        "content_type": content_type,
        "asset_id": asset_id,
        "url": url,
        "protocol": protocol,
        "uploaded_at": uploaded_at,
        "error": error,
        **extra,
    }
    return {key: value for key, value in document.items() if value is not None}


def write(path: Path, document: dict[str, Any]) -> os.stat_result:
    """Atomically replace ``path`` with ``document`` (UTF-8, indented). Returns the stat of
    what was written (the rename keeps it), so a caller knows its own sidecar later even if
    someone changes the file right after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        # mkstemp makes 0600 files; a sidecar is for the people who drop files: honour the umask.
        os.fchmod(handle, 0o666 & ~current_umask())
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            written = os.fstat(out.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return written


@functools.cache
def current_umask() -> int:
    """The process umask, read without changing it (setting and restoring it would briefly
    give files created by other threads the wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; best effort where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(path: Path | str) -> dict[str, Any] | None:
    """The sidecar at ``path``, or None if it is missing or not one of ours."""
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        return None
    return document
