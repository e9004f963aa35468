"""`scan`: one pass over every folder, by this process or by the daemon that owns the state
directory; `scan --dry-run` says what would happen and touches nothing.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from watcher.commands.configpath import resolve_config_path
from watcher.commands.exits import EXIT_FAILED, EXIT_OK, still_unreachable, unfinished
from watcher.commands.rideout import install_signal_handlers, until_done_riding_out_outages
from watcher.commands.serve import rebuild_journal
from watcher.config import Config, load_config
from watcher.state.states import FileState

if TYPE_CHECKING:
    import argparse

    from watcher.service.daemon import Daemon


def cmd_scan(args: argparse.Namespace) -> int:
    from watcher.commands import scanreport
    from watcher.service.daemon import Daemon
    from watcher.state.lock import StateLock

    config = load_config(resolve_config_path(args.config))
    if args.dry_run:
        return _dry_run(config)
    if StateLock(config.state_dir).held_by_other():
        return _scan_by_the_daemon(config)
    if args.rebuild_journal:
        rebuild_journal(config)
    stop = threading.Event()
    install_signal_handlers(stop, threading.Event())
    tally = scanreport.RunTally()
    daemon = Daemon(config, on_event=tally.on_event)
    progress, close_progress = scanreport.progress_for(sys.stderr.isatty())
    with scanreport.logs_above_the_bar(progress is not None):
        daemon.start(watch=False)
        watcher_thread = threading.Thread(
            target=_scan_until_done, args=(daemon, progress, args.wait_for_api), daemon=True
        )
        watcher_thread.start()
        while watcher_thread.is_alive() and not stop.wait(0.1):
            pass
        close_progress()
    unreachable = daemon.client.reachability.outage
    daemon.stop()
    counts = daemon.final_counts()
    failed = unfinished(counts)
    already_done = max(0, daemon.scanner.scanned - daemon.scanner.scan_noticed)
    print(tally.summary(failed, already_done), file=sys.stderr)
    if unreachable is not None and counts.get(FileState.HELD, 0) and not stop.is_set():
        return still_unreachable(args.wait_for_api, unreachable.last_error, "scan or run")
    return EXIT_FAILED if failed or stop.is_set() else EXIT_OK


def _scan_until_done(
    daemon: Daemon, progress: Callable[[int], None] | None, wait_for_api: float
) -> None:
    """Wait for the pass, riding out an outage for at most ``wait_for_api`` seconds."""
    until_done_riding_out_outages(daemon, wait_for_api, lambda: daemon.wait_until_idle(progress))


def _dry_run(config: Config) -> int:
    from watcher.commands import dryrun

    lines, summary = dryrun.render(dryrun.foresee(config))
    for line in lines:
        print(line)
    print(summary, file=sys.stderr)
    return EXIT_OK


def _scan_by_the_daemon(config: Config) -> int:
    """A daemon owns this state directory: ask it to look through every folder now."""
    from watcher.state.journals import open_journal

    journal = open_journal(config)
    try:
        for folder in config.folders:
            journal.request(str(folder.path), str(folder.path))
    finally:
        journal.close()
    print(
        f"the running daemon ({config.state_dir}) looks through the {len(config.folders)} "
        "folder(s) now; follow it with `heygen-watcher status`"
    )
    return EXIT_OK
