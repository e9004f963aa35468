"""Writing received bytes to disk on a second thread.

Under memory or writeback pressure a write() can take as long as receiving and hashing the same
bytes; doing it on its own thread lets the two overlap instead of adding up.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import TracebackType

from watcher.sandbox.exchange import CHUNK_BYTES

BUFFERS = 4


class Spool:
    """A file fed with filled buffers; ``take()`` hands out a free one to fill next."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._filled: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        for _ in range(BUFFERS):
            self._free.put(bytearray(CHUNK_BYTES))
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._write_all, name="sandbox-spool", daemon=True)

    def __enter__(self) -> Spool:
        # Closed by the writer thread once the last buffer is written.
        self._out = open(self._path, "wb", buffering=0)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._filled.put(None)
        self._thread.join()
        if exc is None and self._error is not None:
            raise self._error

    def take(self) -> bytearray:
        return self._free.get()

    def put(self, buffer: bytearray, length: int) -> None:
        self._filled.put((buffer, length))

    def _write_all(self) -> None:
        with self._out:
            while (item := self._filled.get()) is not None:
                buffer, length = item
                if self._error is None:
                    self._write(memoryview(buffer)[:length])
                # Buffers go back even after a failure, so the receiving side never blocks.
                self._free.put(buffer)

    def _write(self, view: memoryview) -> None:
        try:
            written = 0
            while written < len(view):
                written += self._out.write(view[written:]) or 0
        except OSError as error:
            self._error = error
