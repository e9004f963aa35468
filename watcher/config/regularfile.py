"""Opening files that anyone allowed to drop files may have planted: regular files only,
never following a symlink, never blocking, and read with a bound.

A FIFO named ``song.mp3`` or ``song.mp3.asset.json`` would block a plain ``open`` forever, a
device could be read without end, and a symlink could point anywhere on the machine. So every
file the daemon opens inside a drop folder (payloads, sidecars read back, companion scripts)
is opened here with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` on the descriptor
actually held (checking the path first and opening after would race with a rename). Small
files are read through `read_regular`, which refuses more than a stated size.

It lives in the bottom layer because the API client (sending a payload), the state (reading
sidecars back) and intake (sniffing) all need the same rule.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotRegularFile(Exception):
    """The path is not a regular file we may read; ``reason`` says what it is instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReadLimitExceeded(Exception):
    """A regular file larger than the caller accepts; ``reason`` says so in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISLNK(mode):
        return "symbolic link (not followed)"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO (not a regular file)"
    if stat.S_ISSOCK(mode):
        return "socket (not a regular file)"
    return "device (not a regular file)"


def open_regular_fd(path: Path | str) -> tuple[int, os.stat_result]:
    """An open descriptor on the regular file at ``path`` and its `fstat`; the caller closes
    it. `NotRegularFile` for a symlink, FIFO, socket, device or folder, none of which is ever
    opened in a way that could block or follow a link."""
    # A look first, so that a device or a FIFO is not even opened (opening some devices does
    # something); the fstat below covers a swap between this look and the open.
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(kind_of(mode))
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegularFile(kind_of(stat.S_IFLNK)) from None
        if error.errno in (errno.ENXIO, errno.ENODEV):  # a socket, or a device without driver
            raise NotRegularFile(kind_of(stat.S_IFSOCK)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(kind_of(info.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def open_regular_file(path: Path | str) -> io.BufferedReader:
    """`open_regular_fd` as a binary file object (reads of a regular file never block)."""
    fd, _ = open_regular_fd(path)
    return io.open(fd, "rb")  # noqa: UP020 - io.open names the type it returns


def read_regular(path: Path | str, limit: int) -> bytes:
    """The whole content of the regular file at ``path``, at most ``limit`` bytes: a larger
    file raises `ReadLimitExceeded` without being read (nor one that grows past it meanwhile)."""
    fd, info = open_regular_fd(path)
    try:
        if info.st_size > limit:
            raise ReadLimitExceeded(f"larger than {limit} bytes ({info.st_size})")
        # Plain reads of what fstat said, on until the end: no buffer of `limit` bytes for
        # every small file (a scan reads a sidecar per file of a backlog).
        parts: list[bytes] = []
        total = 0
        while total <= limit:
            piece = os.read(fd, min(limit + 1 - total, max(info.st_size + 1 - total, 65536)))
            if not piece:
                break
            parts.append(piece)
            total += len(piece)
    finally:
        os.close(fd)
    data = b"".join(parts)
    if len(data) > limit:
        raise ReadLimitExceeded(f"larger than {limit} bytes (it grew while being read)")
    return data
