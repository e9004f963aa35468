"""A real, small filesystem for the tests of a full or read-only disk: a 256 KiB tmpfs (mounting
needs root: without it the test is skipped, and fails under CI=true)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(mountpoint: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted on ``mountpoint`` (an existing folder) while the block runs."""
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


class SmallDisk:
    """A 256 KiB tmpfs: `fill` takes every free byte, `free` gives them back, `read_only`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fill(self) -> None:
        for number, block in enumerate((65536, 4096, 512, 1)):
            fd = os.open(self.path / f"filler-{number}", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while os.write(fd, b"\0" * block):
                    pass
            except OSError:
                pass  # full
            finally:
                os.close(fd)

    def free(self) -> None:
        for leftover in self.path.glob("filler*"):
            leftover.unlink()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)
