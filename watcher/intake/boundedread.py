"""Opening a dropped file for sniffing: regular files only, no symlinks, small positioned reads.

A drop folder is written by others. A FIFO named ``song.mp3`` would block a plain ``open``
forever, and a symlink could point anywhere on the machine, so the file is opened with
``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` on the descriptor we actually hold
(checking the path first and opening after would race with a rename). Container parsers then read
through `BoundedReader`, which never hands out more than `MAX_READ` bytes at a time and counts
what it read, so "never read the whole file" is something a test can check.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from watcher.config.regularfile import NotRegularFile, kind_of, open_regular_fd

MAX_READ = 64 * 1024

__all__ = ["MAX_READ", "BoundedReader", "NotRegularFile", "kind_of", "open_regular"]


class BoundedReader:
    """Positioned reads of at most `MAX_READ` bytes each from an open regular file."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size
        self.reads = 0
        self.bytes_read = 0

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end of the file, never more
        than `MAX_READ`)."""
        if offset < 0 or offset >= self.size or length <= 0:
            return b""
        length = min(length, MAX_READ, self.size - offset)
        data = os.pread(self._fd, length, offset)
        self.reads += 1
        self.bytes_read += len(data)
        return data


@contextmanager
def open_regular(path: Path | str) -> Iterator[BoundedReader]:
    """A `BoundedReader` on ``path``; `NotRegularFile` for a symlink, FIFO, socket, device or
    folder (none of which is ever opened in a way that could block)."""
    fd, info = open_regular_fd(path)
    try:
        yield BoundedReader(fd, info.st_size)
    finally:
        os.close(fd)
