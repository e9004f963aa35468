"""Exit codes, and the expected failures and endings that map to them.

0 success, 1 some files failed, 2 usage or configuration error, 3 (`scan`, `retry`) the API
stayed unreachable for all of --wait-for-api.
"""

from __future__ import annotations

import sys

from watcher.state.states import UNFINISHED

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# `scan`, `retry`: the API stayed unreachable for all of --wait-for-api; the files wait, `held`.
EXIT_UNREACHABLE = 3


def unfinished(counts: dict[str, int]) -> int:
    """Files a pass left without a final outcome (failed, waiting for a retry or a key)."""
    return sum(counts.get(state, 0) for state in UNFINISHED)


def still_unreachable(waited: float, last_error: str, next_chance: str) -> int:
    print(
        f"the API is still unreachable after waiting {waited:g}s ({last_error}); held files "
        f"are uploaded by the next {next_chance}",
        file=sys.stderr,
    )
    return EXIT_UNREACHABLE
