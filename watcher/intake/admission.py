"""Which files we take: pure decisions on names and `stat` results, plus the sniff.

Nothing here uploads or writes. `screen_name` and `screen_stat` never open the file; `classify`
opens regular files only (never following a symlink, never waiting on a FIFO) and reads a few
bounded pieces of them (see `watcher.intake.sniff`).
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
from watcher.config.mediatypes import PROTOCOL_TYPES
from watcher.convert.converter import Plan
from watcher.convert.targets import MP4, nominal_target
from watcher.intake.boundedread import NotRegularFile, kind_of
from watcher.intake.sniff import Sniffed, sniff_path
from watcher.state.sidecar import is_sidecar_name

# Written by browsers, editors, office suites and download tools before the final rename.
PARTIAL_PATTERNS = ("*.part", "*.partial", "*.crdownload", "*.tmp", "*.swp", "~*", ".~lock*")


class Outcome(Enum):
    IGNORE = "ignore"  # not ours to look at (hidden, partial, sidecar): no log line above debug
    SKIP = "skip"  # not a regular file: logged, never opened, no sidecar
    REJECT = "reject"  # a real file we refuse: the sidecar says why
    ACCEPT = "accept"
    CONVERT = "convert"  # a type HeyGen refuses that the folder converts to one it takes


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    content_type: str | None = None
    detected_type: str | None = None
    # CONVERT: what the file usually becomes (the converter decides once it looks inside);
    # ACCEPT of an MP4 in a converting folder: its video codec is still to be looked at.
    target_type: str | None = None
    # ACCEPT after the converter looked inside: how it converts the file.
    plan: Plan | None = None

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
    if stat.S_ISDIR(mode):
        return Decision(Outcome.IGNORE, "folder")
    if not stat.S_ISREG(mode):
        return Decision(Outcome.SKIP, kind_of(mode))
    if info.st_size == 0:
        return Decision(Outcome.REJECT, "empty: the file has no bytes")
    return None


def accepted_types(rules: FolderConfig, protocol: str) -> tuple[str, ...]:
    """What a folder takes: its `types` that the upload protocol can carry."""
    takes = PROTOCOL_TYPES[protocol]
    return tuple(content_type for content_type in rules.types if content_type in takes)


def _refusal(sniffed: Sniffed, rules: FolderConfig, protocol: str) -> str:
    accepted = accepted_types(rules, protocol)
    listed = ", ".join(accepted) if accepted else "nothing (check the folder's types)"
    if sniffed.content_type in rules.types:
        # The folder asks for it, the protocol cannot carry it (check-config warns about this).
        return (
            f"unsupported type: {sniffed.what} cannot be uploaded with the {protocol} "
            f"protocol; accepted here: {listed}"
        )
    return f"unsupported type: {sniffed.what}; accepted here: {listed}"


def judge_type(sniffed: Sniffed, size: int, rules: FolderConfig, protocol: str) -> Decision:
    """ACCEPT or REJECT a sniffed file against a folder's rules and the upload protocol."""
    content_type = sniffed.content_type
    if sniffed.damage is not None:
        return Decision(Outcome.REJECT, f"damaged: {sniffed.damage}", detected_type=content_type)
    accepted = accepted_types(rules, protocol)
    if content_type not in accepted:
        target = nominal_target(content_type, accepted)
        if target is not None and rules.convert:
            return Decision(Outcome.CONVERT, detected_type=content_type, target_type=target)
        reason = _refusal(sniffed, rules, protocol)
        if target is not None:
            reason += f"; `convert: true` on the folder would convert it to {target}"
        return Decision(Outcome.REJECT, reason, detected_type=content_type)
    limit = rules.max_bytes_for(content_type)
    if limit is not None and size > limit:
        return Decision(
            Outcome.REJECT,
            f"too large: {size} bytes, the limit for {content_type.split('/')[0]} is {limit}",
            detected_type=content_type,
        )
    # An MP4 may hold HEVC, which a converting folder turns into H.264 (`watcher.convert`).
    maybe = MP4 if rules.convert and content_type == MP4 else None
    return Decision(
        Outcome.ACCEPT, content_type=content_type, detected_type=content_type, target_type=maybe
    )


def classify(path: Path, info: os.stat_result, rules: FolderConfig, protocol: str) -> Decision:
    """The full verdict on one regular, non-empty file: sniff it and judge the type. A file that
    turned into something else since its ``lstat`` (a symlink, a FIFO) is skipped unopened."""
    try:
        sniffed = sniff_path(path)
    except NotRegularFile as error:
        return Decision(Outcome.SKIP, error.reason)
    return judge_type(sniffed, info.st_size, rules, protocol)
