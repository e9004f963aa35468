"""How soon to try again a local write that failed (a sidecar, a move, a download).

A full disk, a folder without permission or a filesystem remounted read-only is cleared by
someone, at some moment we cannot see: try again soon and often, never on the upload retry
window (which spreads a file's network attempts over an hour).
"""

from __future__ import annotations

import errno

LOCAL_RETRY_FIRST_SECONDS = 1.0
LOCAL_RETRY_MAX_SECONDS = 30.0


def local_retry_delay_seconds(failures: int) -> float:
    """Doubling from one second after the first failure, capped at half a minute."""
    return float(
        min(LOCAL_RETRY_MAX_SECONDS, LOCAL_RETRY_FIRST_SECONDS * 2 ** max(0, failures - 1))
    )


def local_error_text(error: OSError) -> str:
    """``No space left on device (ENOSPC)``: the reason as `status` shows it."""
    name = errno.errorcode.get(error.errno or 0)
    text = error.strerror or str(error)
    return f"{text} ({name})" if name else text
