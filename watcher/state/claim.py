"""A folder belongs to one journal: a claim file in the folder, held with ``flock``.

Two state directories watching one folder would both upload each new file (neither journal
knows the other's uploads). A running daemon, scan or retry holds ``.heygen-watcher.lock`` in
each of its folders (hidden, so the scanner never takes it); the lock goes with its process,
even after ``kill -9``. The file also says who holds it (state directory, pid, user), so
another heygen-watcher can refuse with a clear message, and, when nobody holds it, warn that
the folder was last worked on from another state directory or by another user.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher.state.lock import StateLocked

log = logging.getLogger(__name__)

CLAIM_NAME = ".heygen-watcher.lock"


class FolderTaken(StateLocked):
    """A running heygen-watcher with another state directory holds the folder."""


@dataclass(frozen=True)
class Holder:
    state_dir: str
    pid: int | None
    user: str

    def describe(self) -> str:
        pid = f"pid {self.pid}, " if self.pid else ""
        return f"{pid}user {self.user}, state directory {self.state_dir}"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read_holder(fd: int) -> Holder | None:
    try:
        data: Any = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("state_dir"), str):
        return None
    pid = data.get("pid")
    return Holder(data["state_dir"], pid if isinstance(pid, int) else None, str(data.get("user")))


def _me(state_dir: Path) -> Holder:
    return Holder(str(state_dir), os.getpid(), _user_name(os.geteuid()))


class FolderClaims:
    """The claims of one process (one state directory) on its folders."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.absolute()
        self._held: dict[Path, int] = {}

    def claim(self, folder: Path) -> None:
        """Hold ``folder`` for this state directory; `FolderTaken` if another holds it."""
        if folder in self._held or not folder.is_dir():
            return
        path = folder / CLAIM_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            writable = True
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                writable = False
            except OSError:
                # A folder we cannot write: nothing to hold. (Said once, at debug level: the
                # daemon's writability check already reports such a folder loudly.)
                log.debug(
                    "cannot claim the folder (%s)", error.strerror, extra={"folder": str(folder)}
                )
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise FolderTaken(
                f"{folder} belongs to a running heygen-watcher ({who}); one folder belongs to "
                "one journal: use that state directory, or stop that daemon first"
            ) from None
        previous = _read_holder(fd)
        me = _me(self.state_dir)
        if previous is not None and (
            previous.state_dir != me.state_dir or previous.user != me.user
        ):
            log.warning(
                "this folder was last worked on by %s; its uploads are not in this journal "
                "(files it uploaded are adopted from their sidecars)",
                previous.describe(),
                extra={"folder": str(folder)},
            )
        if writable:
            document = {"state_dir": me.state_dir, "pid": me.pid, "user": me.user}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(document) + "\n").encode(), 0)
        self._held[folder] = fd

    def release(self, folder: Path) -> None:
        fd = self._held.pop(folder, None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        for folder in list(self._held):
            self.release(folder)


def running_holder(path: Path, state_dir: Path) -> Holder | None:
    """The running heygen-watcher with another state directory that holds ``path``'s folder
    or one above it, if any (for files named by hand)."""
    mine = str(state_dir.absolute())
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        claim = folder / CLAIM_NAME
        try:
            fd = os.open(claim, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                if holder is None or holder.state_dir != mine:
                    return holder or Holder("(unknown)", None, "(unknown)")
        finally:
            os.close(fd)
    return None
