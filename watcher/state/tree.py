"""Walking a drop folder's tree: every file below it, symlinks not followed, hidden folders
skipped. Shared by the scans that notice files and by the journal's rebuild from sidecars.

`walk_changed` is the scans' walk: it lists only directories whose stamp (inode, mtime,
ctime) moved since the last pass, so a pass over a large finished tree costs one stat per
directory, not one per file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


def walk_files(root: Path, recursive: bool) -> Iterator[os.DirEntry[str]]:
    """Every non-directory entry under ``root`` (symlinks not followed), hidden folders skipped."""
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            files, subdirs = list_directory(folder, recursive)
        except FileNotFoundError:
            continue
        except OSError as error:
            log.warning("cannot list %s: %s", folder, error.strerror)
            continue
        stack.extend(subdirs)
        yield from files


def list_directory(folder: str, recursive: bool) -> tuple[list[os.DirEntry[str]], list[str]]:
    """One directory's non-directory entries, and (when ``recursive``) the paths of its
    subfolders, hidden ones left out. Raises OSError when the directory cannot be listed."""
    files: list[os.DirEntry[str]] = []
    subdirs: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if recursive and not entry.name.startswith("."):
                    subdirs.append(entry.path)
            else:
                files.append(entry)
    return files, subdirs


# A directory changed this recently may change again within the same tick of the file
# system's clock without its mtime moving: it is listed again next time rather than trusted.
RACY_NANOSECONDS = 2_000_000_000


@dataclass(frozen=True)
class DirStamp:
    """What a directory looked like when it was last listed: a file created, deleted or
    renamed in it moves its mtime and ctime (a file rewritten in place does not)."""

    inode: int
    mtime_ns: int
    ctime_ns: int
    subdirs: tuple[str, ...]


@dataclass
class TreeStamps:
    """The stamps of every directory under watched folders, from the last pass that looked
    at them; a pass that trusts them lists only the directories whose stamp moved."""

    dirs: dict[str, DirStamp] = field(default_factory=dict)
    # Directories looked at in the last pass: stat'ed only (skipped) or listed.
    skipped: int = 0
    listed: int = 0

    def keep(self, listing: Listing) -> None:
        """Trust this listing's stamp from now on: the caller has recorded every file in it
        as it is (nothing noticed, nothing still waiting)."""
        if listing.stamp is not None:
            self.dirs[listing.path] = listing.stamp


@dataclass
class Listing:
    """One directory `walk_changed` listed: its non-directory entries, and the stamp to
    trust once they are all recorded (None: changed too recently to be trusted)."""

    path: str
    files: list[os.DirEntry[str]]
    stamp: DirStamp | None


def walk_changed(
    root: Path, recursive: bool, stamps: TreeStamps, *, trust: bool
) -> Iterator[Listing]:
    """A `Listing` of every directory under ``root`` whose stamp moved since ``stamps`` last
    saw it (every directory when not ``trust``). One stat per directory otherwise:
    subdirectories of an unchanged directory are known from its stamp. A listed directory's
    old stamp is dropped; the caller keeps the new one (`TreeStamps.keep`) once it has
    recorded the directory's files."""
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        now = time.time_ns()
        try:
            info = os.stat(folder, follow_symlinks=False)
        except OSError:
            stamps.dirs.pop(folder, None)
            continue
        old = stamps.dirs.get(folder)
        if (
            trust
            and old is not None
            and (old.inode, old.mtime_ns, old.ctime_ns)
            == (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        ):
            stamps.skipped += 1
            stack.extend(old.subdirs)
            continue
        try:
            files, subdirs = list_directory(folder, recursive)
        except FileNotFoundError:
            stamps.dirs.pop(folder, None)
            continue
        except OSError as error:
            log.warning("cannot list %s: %s", folder, error.strerror)
            stamps.dirs.pop(folder, None)
            continue
        stamps.listed += 1
        stamps.dirs.pop(folder, None)
        # Stamped as seen before the listing: a change during the listing moves it again.
        stamp = None
        if now - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NANOSECONDS:
            stamp = DirStamp(info.st_ino, info.st_mtime_ns, info.st_ctime_ns, tuple(subdirs))
        stack.extend(subdirs)
        yield Listing(folder, files, stamp)
