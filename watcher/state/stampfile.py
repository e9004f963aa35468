"""Directory stamps kept across a restart, so that a restart over a large finished tree lists
only the directories that changed while the daemon was down.

Written at a clean stop, read (and removed) at the next start: a crash leaves none, and the
next start walks every folder. The stamps belong to one journal (a random name it keeps in
its meta table): a journal deleted, rebuilt or replaced makes them worthless. Only
directories whose every file the journal had recorded as it is are stamped
(`TreeStamps.keep`), so a directory whose stamp still matches has nothing new, renamed or
deleted. A file rewritten in place while the daemon was down moves no directory's stamp: the
daemon walks every folder in full in the background after such a start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from watcher.state.journal_api import Journal
from watcher.state.tree import DirStamp, TreeStamps

log = logging.getLogger(__name__)

FILE_NAME = "dirstamps.json"
_FORMAT = 1


_META_KEY = "stamps_journal_id"


def journal_identity(journal: Journal) -> str:
    """The journal's own name for itself, made at first use (a new journal, a new name)."""
    identity = journal.get_meta(_META_KEY)
    if not isinstance(identity, str):
        identity = secrets.token_hex(16)
        journal.set_meta(_META_KEY, identity)
    return identity


def save(state_dir: Path, journal: Journal, stamps: TreeStamps) -> None:
    identity = journal_identity(journal)
    document = {
        "format": _FORMAT,
        "journal": identity,
        "dirs": {
            path: [s.inode, s.mtime_ns, s.ctime_ns, list(s.subdirs)]
            for path, s in stamps.dirs.items()
        },
    }
    target = state_dir / FILE_NAME
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_text(json.dumps(document), encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        log.warning("could not keep the directory stamps (%s): the next start walks in full", error)
        with contextlib.suppress(OSError):
            temporary.unlink()


def take(state_dir: Path, journal: Journal) -> TreeStamps | None:
    """The stamps a clean stop left for this journal, or None; the file is removed either way."""
    target = state_dir / FILE_NAME
    try:
        text = target.read_text(encoding="utf-8")
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            target.unlink()
    try:
        document: Any = json.loads(text)
        if document.get("format") != _FORMAT:
            return None
        if document.get("journal") != journal_identity(journal):
            return None
        dirs = {
            str(path): DirStamp(int(a), int(b), int(c), tuple(str(d) for d in subdirs))
            for path, (a, b, c, subdirs) in document["dirs"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return TreeStamps(dirs=dirs)
