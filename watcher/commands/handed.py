"""The commands on files named by hand: `upload FILE…` and `retry [PATH…]`. Either hands the
files to the daemon that owns the state directory, or runs the pipeline on them itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.commands.configpath import resolve_config_path
from watcher.commands.exits import EXIT_FAILED, EXIT_OK, still_unreachable
from watcher.commands.rideout import until_done_riding_out_outages
from watcher.config import load_config
from watcher.state.states import UNFINISHED, FileState

if TYPE_CHECKING:
    import argparse


def cmd_upload(args: argparse.Namespace) -> int:
    from watcher.commands import upload
    from watcher.service.daemon import Daemon
    from watcher.state.claim import FolderTaken, running_holder
    from watcher.state.journals import open_journal
    from watcher.state.lock import StateLock

    config = load_config(resolve_config_path(args.config), need_folders=False)
    if StateLock(config.state_dir).held_by_other():
        # A daemon owns this journal: hand it the files instead of racing it.
        journal = open_journal(config)
        try:
            sidecars = upload.standalone_sidecars(config, journal)
            plans = [
                upload.plan(config, journal, sidecars, f, force=args.force) for f in args.files
            ]
            for item in plans:
                if item.report is None:
                    item.asked_at = journal.request(str(item.path), str(item.folder.path))
            handed = sum(1 for item in plans if item.report is None)
            if handed:
                print(
                    f"handed {handed} file(s) to the running daemon ({config.state_dir}); "
                    "waiting for their outcome",
                    file=sys.stderr,
                )
            upload.wait_for_daemon(journal, plans, upload.HANDOFF_WAIT_SECONDS)
            reports = [
                item.report or upload.outcome_of(journal, sidecars, item, None) for item in plans
            ]
        finally:
            journal.close()
    else:
        for name in args.files:
            holder = running_holder(Path(name).absolute(), config.state_dir)
            if holder is not None:
                raise FolderTaken(
                    f"{name} is in a folder that belongs to a running heygen-watcher "
                    f"({holder.describe()}); upload it with that state directory"
                )
        daemon = Daemon(config)
        daemon.start(watch=False, scan=False)
        try:
            pipeline = daemon.pipeline
            plans = [
                upload.plan(config, daemon.journal, pipeline.sidecars, f, force=args.force)
                for f in args.files
            ]
            for item in plans:
                if item.report is None:
                    pipeline.pool.submit(item.path, item.folder, row=item.resume)
            daemon.wait_until_idle()
            reports = [
                item.report
                or upload.outcome_of(daemon.journal, pipeline.sidecars, item, pipeline.outcome)
                for item in plans
            ]
        finally:
            daemon.stop()
    upload.print_reports(reports)
    print(upload.summary(reports), file=sys.stderr)
    return upload.exit_code(reports)


def cmd_retry(args: argparse.Namespace) -> int:
    from watcher.commands import retry
    from watcher.service.daemon import Daemon
    from watcher.state.journals import open_journal
    from watcher.state.lock import StateLock

    config = load_config(resolve_config_path(args.config))
    paths = retry.absolute(args.paths)
    if config.journal_url is None and not config.journal_path.exists():
        print("nothing to retry: no journal yet (nothing has run with this state_dir)")
        return EXIT_OK
    journal = open_journal(config)
    try:
        if paths is None:
            chosen = retry.retried_paths(journal)
        else:
            verdicts = [retry.judge(journal, path) for path in paths]
            for verdict in verdicts:
                if not verdict.retried:
                    print(f"not retried: {verdict.path}: {verdict.reason}", file=sys.stderr)
            chosen = [verdict.path for verdict in verdicts if verdict.retried]
        if chosen:
            journal.mark_for_retry(chosen)
            journal.mark_videos_for_retry(chosen)
    finally:
        journal.close()
    if StateLock(config.state_dir).held_by_other():
        print(
            f"{len(chosen)} file(s) marked for retry; the running daemon retries them "
            "within seconds"
        )
        return EXIT_OK
    print(f"{len(chosen)} file(s) marked for retry; retrying now", file=sys.stderr)
    daemon = Daemon(config)
    daemon.start(watch=False, scan=False)
    try:
        daemon.upkeep.keep_true(paths)
        only = frozenset(chosen)
        daemon.resumer.submit_due(only)
        until_done_riding_out_outages(
            daemon,
            args.wait_for_api,
            lambda: daemon.wait_until_idle(include_videos=True, only=only),
            only,
        )
        unreachable = daemon.client.reachability.outage
    finally:
        daemon.stop()
    journal = open_journal(config)
    try:
        rows = [journal.get(path) for path in chosen]
    finally:
        journal.close()
    left = [row for row in rows if row is not None and row.state in UNFINISHED]
    for row in left:
        print(f"still not uploaded: {row.path}", file=sys.stderr)
    if unreachable is not None and any(row.state is FileState.HELD for row in left):
        return still_unreachable(args.wait_for_api, unreachable.last_error, "retry, scan or run")
    return EXIT_FAILED if left else EXIT_OK
