"""Where a file's sidecar lives, and where a file goes after upload (``after_upload: move``)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from watcher.config import FolderConfig
from watcher.config.regularfile import open_regular_file
from watcher.state import sidecar


def sidecar_for(file: Path, folder: FolderConfig) -> Path:
    """Beside the file; mirrored under ``sidecar_dir`` for read-only drop folders; always
    beside a file that was moved after upload (the two travel together)."""
    if folder.move_to is not None and file.is_relative_to(folder.move_to):
        return sidecar.sidecar_path(file)
    return sidecar.sidecar_path(file, folder.path, folder.sidecar_dir)


def moved_path(file: Path, folder: FolderConfig) -> Path | None:
    """Where ``after_upload: move`` puts the file (same relative path), or None to keep it."""
    if folder.move_to is None or file.is_relative_to(folder.move_to):
        return None
    return folder.move_to / file.relative_to(folder.path)


def move_file(source: Path, target: Path) -> Path:
    """Move without ever overwriting or deleting: a name taken at the target (by a file or by
    its sidecar) gets a suffix, `` (1)``, `` (2)``…, even when another writer takes a name at
    the same moment or the target is on another filesystem."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for candidate in _names_for(target):
        try:
            # link + unlink refuses to replace an existing name, unlike rename.
            os.link(source, candidate, follow_symlinks=False)
        except FileExistsError:
            continue  # taken, perhaps just now by someone else: the next name
        except OSError as error:
            if error.errno not in _CANNOT_LINK:
                raise
            return _copy_then_link(source, target)
        os.unlink(source)
        return candidate
    raise FileExistsError(f"no free name for {target} after {_MAX_SUFFIX} tries")


# Another filesystem, or one (or a policy such as fs.protected_hardlinks) that refuses links.
_CANNOT_LINK = (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK)
_MAX_SUFFIX = 10_000


def _names_for(target: Path) -> Iterator[Path]:
    """``target``, then `` (1)``, `` (2)``… skipping names whose sidecar name is taken."""
    for counter in range(_MAX_SUFFIX):
        suffix = f" ({counter})" if counter else ""
        candidate = target.with_name(f"{target.stem}{suffix}{target.suffix}")
        if not sidecar.sidecar_path(candidate).exists():
            yield candidate


def _copy_then_link(source: Path, target: Path) -> Path:
    """Across filesystems: copy into a hidden temp file beside the target (fsynced), then link
    it to the first free name, which never replaces one; only then remove the source."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out, open_regular_file(source) as original:
            shutil.copyfileobj(original, out, COPY_BLOCK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(source, temp)
        for candidate in _names_for(target):
            try:
                os.link(temp, candidate)
            except FileExistsError:
                continue
            os.unlink(source)
            return candidate
        raise FileExistsError(f"no free name for {target} after {_MAX_SUFFIX} tries")
    finally:
        temp.unlink(missing_ok=True)


COPY_BLOCK_BYTES = 1024 * 1024
