"""The user-facing record of what happened to a file: ``<name>.asset.json`` beside it.

Written atomically (temp file in the same folder, fsync, rename) so a reader, or a crash,
never sees half a sidecar. The temp name starts with a dot, which the watcher ignores.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.config.regularfile import NotRegularFile, ReadLimitExceeded, read_regular
from watcher.state import names

log = logging.getLogger(__name__)

SCHEMA = "heygen-watcher/asset/v1"
SUFFIX = ".asset.json"
STATUSES = ("uploaded", "rejected", "failed")
# Temp files are ``.<8 random characters>.asset.json.tmp``: 24 bytes whatever the sidecar's
# name, so a sidecar whose name is legal never fails for its temp file's.
TEMP_SUFFIX = SUFFIX + ".tmp"


def utc_now_iso() -> str:
    return iso_from_epoch(time.time())


def iso_from_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def is_sidecar_name(name: str) -> bool:
    return name.endswith(SUFFIX) or name.endswith(TEMP_SUFFIX) or (SUFFIX + ".tmp") in name


def sidecar_path(file: Path, root: Path | None = None, sidecar_dir: Path | None = None) -> Path:
    """``<file>.asset.json`` beside the file, or at the same relative place under
    ``sidecar_dir`` (for read-only drop folders). A name too long for that is shortened (see
    `watcher.state.names`)."""
    if sidecar_dir is None or root is None:
        folder = file.parent
    else:
        relative = file.relative_to(root)
        folder = sidecar_dir / relative.parent
    name = file.name + SUFFIX
    if len(os.fsencode(name)) > SHORT_NAME_BYTES:
        name = names.fitted(file.name, SUFFIX, names.name_max(folder))
    return folder / name


# Names up to this long fit everywhere (eCryptfs' 143 bytes is the commonest smaller limit):
# only longer ones cost a look at the filesystem's limit.
SHORT_NAME_BYTES = 143


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
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    mode = 0o666 & ~current_umask()
    fd, temp = _new_temp(path.parent, mode)
    try:
        # A sidecar is for the people who drop files: the umask decides, whatever a default
        # ACL of the folder says. Nearly always the file was created so; a chmod is only for
        # an ACL, since each chmod is one more event for every watcher of the folder.
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        written = os.fstat(fd)
        os.close(fd)
        fd = -1
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return written


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_TEMP_TRIES = 100


def _new_temp(folder: Path, mode: int) -> tuple[int, str]:
    """A new temp file ``.<8 random characters>.asset.json.tmp`` in ``folder`` (created with
    its parents when missing, with ``mode`` as the umask or a default ACL leaves it), open
    for writing. What `tempfile.mkstemp` does, without its name generator and its file
    object, which cost more than the write itself."""
    created = False
    for _ in range(_TEMP_TRIES):
        temp = os.path.join(folder, f".{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(temp, _TEMP_FLAGS, mode), temp
        except FileExistsError:
            continue  # someone's file has this name: draw another
        except FileNotFoundError:
            if created:
                raise
            folder.mkdir(parents=True, exist_ok=True)
            created = True
    raise FileExistsError(f"no free temp file name in {folder}")


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


# Ours are a few KiB (a video's adds a little): anything bigger was not written by us.
MAX_SIDECAR_BYTES = 1024 * 1024


def read(path: Path | str) -> dict[str, Any] | None:
    """The sidecar at ``path``, or None if it is missing or not one of ours. Only a regular
    file of at most `MAX_SIDECAR_BYTES` is read (a FIFO or a device planted under a sidecar's
    name is skipped with a log line, never opened in a way that blocks)."""
    try:
        data = read_regular(path, MAX_SIDECAR_BYTES)
    except (NotRegularFile, ReadLimitExceeded) as error:
        log.warning("not reading %s as a sidecar: %s", path, error.reason)
        return None
    except OSError:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        return None
    return document
