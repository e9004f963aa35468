"""Which files we take: pure decisions on names and `stat` results, plus the sniff.

Nothing here uploads or writes. `screen_name` and `screen_stat` never open the file (opening a
FIFO blocks forever); `classify` reads at most the first 64 KiB for libmagic.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePath

from watcher.config import FolderConfig
from watcher.intake.sniff import sniff_file
from watcher.state.sidecar import is_sidecar_name

# Written by browsers, editors, office suites and download tools before the final rename.
PARTIAL_PATTERNS = ("*.part", "*.partial", "*.crdownload", "*.tmp", "*.swp", "~*", ".~lock*")


class Outcome(Enum):
    IGNORE = "ignore"  # not ours to look at (hidden, partial, sidecar): no log line above debug
    SKIP = "skip"  # not a regular file: logged, never opened, no sidecar
    REJECT = "reject"  # a real file we refuse: the sidecar says why
    ACCEPT = "accept"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    content_type: str | None = None
    detected_type: str | None = None

    @property
    def reason_code(self) -> str:
        """A short stable label for metrics (the part of the reason before the colon)."""
        return self.reason.split(":", 1)[0]


_HIDDEN = Decision(Outcome.IGNORE, "hidden")
_SIDECAR = Decision(Outcome.IGNORE, "sidecar")
_PARTIAL = Decision(Outcome.IGNORE, "partial download or temporary file")
_SCRIPT = Decision(Outcome.IGNORE, "script companion")
_IGNORED = Decision(Outcome.IGNORE, "matches an ignore pattern")


@functools.cache
def _glob_matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One compiled expression for a set of globs: scanning 100,000 names with fnmatch one
    pattern at a time costs seconds."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))


_PARTIAL_MATCHER = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in PARTIAL_PATTERNS))


def screen_name(
    relative: PurePath | str, ignore: tuple[str, ...] = (), *, scripts: bool = False
) -> Decision | None:
    """IGNORE for names we never touch; None to go on. ``relative`` is the path below the
    watched folder. With ``scripts`` (a templated folder), ``.txt`` files are the companion
    scripts of media files, not files to upload."""
    text = relative if isinstance(relative, str) else relative.as_posix()
    name = text.rpartition("/")[2]
    if name.startswith(".") or "/." in text or text.startswith("."):
        return _HIDDEN
    if is_sidecar_name(name):
        return _SIDECAR
    if _PARTIAL_MATCHER.match(name):
        return _PARTIAL
    if scripts and name.lower().endswith(".txt"):
        return _SCRIPT
    matcher = _glob_matcher(ignore)
    if matcher is not None and (matcher.match(name) or matcher.match(text)):
        return _IGNORED
    return None


def screen_stat(info: os.stat_result) -> Decision | None:
    """SKIP for anything but a regular file (from ``lstat``: symlinks are not followed)."""
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return Decision(Outcome.SKIP, "symbolic link (not followed)")
    if stat.S_ISDIR(mode):
        return Decision(Outcome.IGNORE, "folder")
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        return Decision(Outcome.SKIP, f"{kind} (not a regular file)")
    if info.st_size == 0:
        return Decision(Outcome.REJECT, "empty: the file has no bytes")
    return None


def judge_type(content_type: str, size: int, rules: FolderConfig) -> Decision:
    """ACCEPT or REJECT a sniffed type and size against a folder's rules."""
    if content_type not in rules.types:
        return Decision(
            Outcome.REJECT,
            f"unsupported type: detected {content_type}, allowed: {', '.join(rules.types)}",
            detected_type=content_type,
        )
    limit = rules.max_bytes_for(content_type)
    if limit is not None and size > limit:
        return Decision(
            Outcome.REJECT,
            f"too large: {size} bytes, the limit for {content_type.split('/')[0]} is {limit}",
            detected_type=content_type,
        )
    return Decision(Outcome.ACCEPT, content_type=content_type, detected_type=content_type)


def classify(path: Path, info: os.stat_result, rules: FolderConfig) -> Decision:
    """The full verdict on one regular, non-empty file: sniff it and judge the type."""
    return judge_type(sniff_file(path), info.st_size, rules)
