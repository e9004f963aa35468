"""Request bodies streamed from disk with a length known in advance.

requests sends ``Content-Length`` only when it can tell a body's length; otherwise it falls back
to chunked transfer encoding, which presigned storage refuses. These readers report their exact
length through ``__len__`` and never hold more than one block in memory (a small body may be
read whole instead: `FileBody.whole`). They stop at the
length they announced even if the file has grown, and fail loudly if it has shrunk, so the bytes
on the wire always match the header.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from watcher.config.regularfile import NotRegularFile, open_regular_fd, open_regular_file

READ_BLOCK_BYTES = 1024 * 1024
# Bodies up to this size are read whole before sending: one read and one send instead of a
# stream of blocks (most drop-folder files are small).
WHOLE_BODY_BYTES = 256 * 1024


class FileChangedError(OSError):
    """The file changed while it was being read for an upload."""


class FileBody:
    """Exactly ``size`` bytes of ``path``, optionally between a prefix and a suffix
    (the multipart envelope), hashing the file's bytes on the way."""

    def __init__(
        self,
        path: Path,
        size: int,
        *,
        prefix: bytes = b"",
        suffix: bytes = b"",
        on_block: Callable[[], None] = lambda: None,
    ) -> None:
        self._path = path
        # Told after every block read: a sender that keeps reading is making progress.
        self._on_block = on_block
        self._size = size
        self._parts: list[bytes] = [prefix] if prefix else []
        self._suffix = suffix
        self._file: BinaryIO | None = None
        self._left = size
        self._hasher = hashlib.sha256()
        self._length = len(prefix) + size + len(suffix)
        # The HTTP stack turns any error raised while reading the body into a connection
        # error; keeping the real one lets the uploader tell "file gone" from "network down".
        self.local_error: OSError | None = None

    def __len__(self) -> int:
        return self._length

    @property
    def finished(self) -> bool:
        """All of the file's bytes have been read (and hashed)."""
        return self._left == 0

    def sha256(self) -> str:
        """The hash of the file bytes sent so far (all of them once the body is consumed)."""
        return self._hasher.hexdigest()

    def whole(self) -> bytes | None:
        """The whole body at once if it is small (and nothing was read yet), else None: stream
        it with `read`. The same rules as `read`: exactly the announced length, hashed, an
        `OSError` kept in ``local_error`` (and raised)."""
        if self._length > WHOLE_BODY_BYTES or self._file is not None or self._left != self._size:
            return None
        try:
            data = self._read_whole()
        except OSError as error:
            self.local_error = error
            raise
        self._left = 0
        self._hasher.update(data)
        self._on_block()
        parts, self._parts = self._parts, []
        suffix, self._suffix = self._suffix, b""
        return b"".join((*parts, data, suffix))

    def _read_whole(self) -> bytes:
        fd, _ = _open_payload_fd(self._path)
        try:
            pieces = []
            left = self._size
            while left > 0:
                piece = os.read(fd, left)
                if not piece:
                    raise FileChangedError(f"{self._path} shrank while it was being uploaded")
                pieces.append(piece)
                left -= len(piece)
        finally:
            os.close(fd)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read(self, amount: int = -1) -> bytes:
        if self._parts:
            return self._parts.pop(0)
        if self._left > 0:
            return self._read_file(amount)
        self._close()
        suffix, self._suffix = self._suffix, b""
        return suffix

    def _read_file(self, amount: int) -> bytes:
        try:
            return self._read_block(amount)
        except OSError as error:
            self.local_error = error
            raise

    def _read_block(self, amount: int) -> bytes:
        if self._file is None:
            self._file = _open_payload(self._path)  # closed when the body ends
        want = self._left if amount is None or amount < 0 else min(amount, self._left)
        block = self._file.read(max(want, 1))
        if not block:
            self._close()
            raise FileChangedError(f"{self._path} shrank while it was being uploaded")
        self._left -= len(block)
        self._hasher.update(block)
        self._on_block()
        return block

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __iter__(self) -> Iterator[bytes]:
        while True:
            block = self.read(READ_BLOCK_BYTES)
            if not block:
                return
            yield block

    def __del__(self) -> None:
        self._close()


def _open_payload_fd(path: Path) -> tuple[int, os.stat_result]:
    """`_open_payload` as a bare descriptor and its stat (no file object: for a small file
    its set-up cost more than the read)."""
    try:
        return open_regular_fd(path)
    except NotRegularFile as error:
        raise FileChangedError(f"{path} is no longer a regular file: {error.reason}") from None


def _open_payload(path: Path) -> io.BufferedReader:
    """The payload, if it is still a regular file: one swapped for a FIFO or a device since it
    was admitted would block or never end; it is judged again instead."""
    try:
        return open_regular_file(path)
    except NotRegularFile as error:
        raise FileChangedError(f"{path} is no longer a regular file: {error.reason}") from None


def sha256_file(path: Path) -> str:
    """Hash a file in 1 MiB blocks (hashlib releases the GIL, so other threads keep going)."""
    hasher = hashlib.sha256()
    fd, info = _open_payload_fd(path)
    try:
        # A small file needs no 1 MiB buffer: zeroing one cost more than hashing the file.
        # One byte more than its size lets the first read take all of it and the next see EOF.
        buffer = bytearray(min(READ_BLOCK_BYTES, info.st_size + 1))
        view = memoryview(buffer)
        while True:
            count = os.readv(fd, [buffer])
            if not count:
                break
            hasher.update(view[:count])
    finally:
        os.close(fd)
    return hasher.hexdigest()
