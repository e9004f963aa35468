"""Command line: ``heygen-watcher COMMAND`` (also ``python -m watcher``).

Exit codes: 0 success, 1 some files failed, 2 usage or configuration error, 3 (`scan`,
`retry`) the API stayed unreachable for all of --wait-for-api.
Expected errors print one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import shtab

from watcher import __version__
from watcher.commands.configpath import (
    ENV_NAME,
    SYSTEM_CONFIG,
    TOUR_CONFIG,
    NoConfig,
    resolve_config_path,
)
from watcher.commands.helptext import COMMANDS
from watcher.config import Config, ConfigError, load_config
from watcher.config.apikey import ApiKey, ApiKeyError
from watcher.service.logsetup import setup_logging
from watcher.state.journal import JournalError
from watcher.state.lock import StateLocked
from watcher.state.states import UNFINISHED, FileState

if TYPE_CHECKING:
    from watcher.service.daemon import Daemon

log = logging.getLogger("watcher")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# `scan`, `retry`: the API stayed unreachable for all of --wait-for-api; the files wait, `held`.
EXIT_UNREACHABLE = 3
# How long `scan` and `retry` probe an unreachable API before they give up: a short outage (a
# restart, a network blip) does not fail a scheduled scan; a long one ends it with
# EXIT_UNREACHABLE.
DEFAULT_WAIT_FOR_API_SECONDS = 300.0


class CommandError(Exception):
    """An expected failure: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help=f"the YAML configuration file (default: ${ENV_NAME}, then the tour's "
        f"{TOUR_CONFIG}, then {SYSTEM_CONFIG})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail (-vv)")
    parser.add_argument(
        "--log-format", choices=("human", "json"), default="human", help="log line format"
    )


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


def _install_signal_handlers(stop: threading.Event, reload: threading.Event) -> None:
    def on_stop(signum: int, frame: object) -> None:
        stop.set()

    def on_reload(signum: int, frame: object) -> None:
        reload.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)


def cmd_run(args: argparse.Namespace) -> int:
    from watcher.service.shell import Service

    sandbox = None
    key = None
    config_path = None
    if args.sandbox:
        from watcher.commands.tour import tour_config
        from watcher.sandbox import Sandbox

        workdir = Path.cwd()
        sandbox = Sandbox(data_dir=workdir / ".heygen-watcher" / "sandbox-data")
        sandbox.start()
        config, key, config_path = tour_config(sandbox, workdir)
    else:
        config_path = resolve_config_path(args.config)
        config = load_config(config_path)
    if args.rebuild_journal:
        rebuild_journal(config)

    def announce(daemon: object) -> None:
        if sandbox is not None:
            print(
                f"Sandbox HeyGen at {sandbox.api_url} (no key needed).\n"
                f"Drop files into {config.folders[0].path}/ and watch <name>.asset.json "
                "appear beside them.\nPress Ctrl-C to stop.",
                file=sys.stderr,
                flush=True,
            )

    service = Service(config, config_path=config_path, key=key, on_started=announce)
    service.install_signal_handlers()
    try:
        return service.run()
    finally:
        if sandbox is not None:
            sandbox.stop()


def rebuild_journal(config: Config) -> None:
    from watcher.state.lock import StateLock
    from watcher.state.rebuild import journal_is_healthy, rebuild

    # Under the state lock: a running daemon's journal is never moved from under it.
    lock = StateLock(config.state_dir)
    lock.acquire()
    try:
        if journal_is_healthy(config.journal_path):
            log.warning(
                "the journal %s is healthy; not rebuilding it (--rebuild-journal is for a "
                "damaged journal; missing sidecars are written again from the journal)",
                config.journal_path,
            )
            return
        count, kept = rebuild(config)
    finally:
        lock.release()
    kept_text = f"; the old journal was kept as {kept}" if kept else ""
    log.info("journal rebuilt from %d sidecar(s)%s", count, kept_text)


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
    _install_signal_handlers(stop, threading.Event())
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
    failed = _unfinished(counts)
    already_done = max(0, daemon.scanned - daemon.scan_noticed)
    print(tally.summary(failed, already_done), file=sys.stderr)
    if unreachable is not None and counts.get(FileState.HELD, 0) and not stop.is_set():
        return _still_unreachable(args.wait_for_api, unreachable.last_error, "scan or run")
    return EXIT_FAILED if failed or stop.is_set() else EXIT_OK


def _add_rebuild_journal(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rebuild-journal",
        action="store_true",
        help="rebuild a damaged journal from the sidecars (a healthy one is kept)",
    )


def _add_wait_for_api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-for-api",
        type=_seconds,
        default=DEFAULT_WAIT_FOR_API_SECONDS,
        metavar="SECONDS",
        help=(
            "while the API is unreachable, probe it and wait up to this long in all for it "
            f"to answer again (default {DEFAULT_WAIT_FOR_API_SECONDS:g}; 0: do not wait)"
        ),
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds: {text!r}")
    return value


def _scan_until_done(
    daemon: Daemon, progress: Callable[[int], None] | None, wait_for_api: float
) -> None:
    """Wait for the pass, riding out an outage for at most ``wait_for_api`` seconds."""
    _until_done_riding_out_outages(daemon, wait_for_api, lambda: daemon.wait_until_idle(progress))


def _until_done_riding_out_outages(
    daemon: Daemon,
    wait_for_api: float,
    wait_until_idle: Callable[[], None],
    only: Collection[str] | None = None,
) -> None:
    """Wait for the work in hand; during an outage, probe as the daemon does (for at most
    ``wait_for_api`` seconds in all) and wait again for the files it resumes (all held files,
    or those of ``only``)."""
    deadline = time.monotonic() + wait_for_api
    wait_until_idle()
    # Only worth waiting for while files wait for it.
    while daemon.client.reachability.down and _held(daemon, only):
        if not daemon.wait_for_api(max(0.0, deadline - time.monotonic()), only):
            return
        wait_until_idle()


def _held(daemon: Daemon, only: Collection[str] | None) -> bool:
    return any(
        only is None or row.path in only for row in daemon.journal.rows_in((FileState.HELD,))
    )


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


def _unfinished(counts: dict[str, int]) -> int:
    """Files a pass left without a final outcome (failed, waiting for a retry or a key)."""
    return sum(counts.get(state, 0) for state in UNFINISHED)


def cmd_status(args: argparse.Namespace) -> int:
    from watcher.commands.status import collect, render

    report = collect(load_config(resolve_config_path(args.config)))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return EXIT_OK


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
        daemon.keep_sidecars_true(paths)
        only = frozenset(chosen)
        daemon.submit_due(only)
        _until_done_riding_out_outages(
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
        return _still_unreachable(args.wait_for_api, unreachable.last_error, "retry, scan or run")
    return EXIT_FAILED if left else EXIT_OK


def _still_unreachable(waited: float, last_error: str, next_chance: str) -> int:
    print(
        f"the API is still unreachable after waiting {waited:g}s ({last_error}); held files "
        f"are uploaded by the next {next_chance}",
        file=sys.stderr,
    )
    return EXIT_UNREACHABLE


def cmd_check_config(args: argparse.Namespace) -> int:
    from watcher.config.preflight import preflight, read_write_paths_line

    config = load_config(resolve_config_path(args.config))
    for warning in config.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    result = preflight(config)
    problems = list(result.problems)
    if args.online and result.key is not None:
        problem = _online_check(config, result.key)
        if problem is not None:
            problems.append(problem)
    for problem in problems:
        print(f"heygen-watcher: config error: {problem}", file=sys.stderr)
    if args.for_service:
        print(read_write_paths_line(result.written))
    if problems:
        return EXIT_USAGE
    online = "; the API accepted it" if args.online else ""
    print(
        f"OK: {config.source}: {len(config.folders)} folder(s); "
        f"API key from {result.key_origin}{online}"
    )
    return EXIT_OK


def _online_check(config: Config, key: ApiKey) -> str | None:
    """One authenticated, read-only call: the status of an asset id that cannot exist.

    `GET /v3/assets/statuses` answers 200 with `not_found` for an unknown id when the key is
    good, and 401 when it is not: unlike a 404 from a single-resource read, a 200 also proves
    the base URL is the API's."""
    from watcher.heygen.client import HeyGenClient
    from watcher.heygen.errors import ApiError, AuthError

    client = HeyGenClient(config.api, key)
    try:
        client.request(
            "GET", "/v3/assets/statuses", params={"asset_ids": "heygen-watcher-check"}, retry=False
        )
    except AuthError as error:
        return f"{config.source}: api: the API refused the key from {key.origin} ({error})"
    except ApiError as error:
        base = config.api.base_url
        return f"{config.source}: api.base_url: {base} did not answer as HeyGen does ({error})"
    finally:
        client.close()
    return None


def cmd_probe(args: argparse.Namespace) -> int:
    from watcher.commands.probe import probe, render
    from watcher.config.apikey import load_api_key

    config = load_config(resolve_config_path(args.config), need_folders=False)
    results = probe(config.api, load_api_key(config.api))
    for line in render(results, config.api.upload_protocol):
        print(line)
    configured = next(r for r in results if r.protocol == config.api.upload_protocol)
    return EXIT_OK if configured.ok else EXIT_FAILED


def cmd_sandbox(args: argparse.Namespace) -> int:
    from watcher.sandbox import serve

    return serve(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        data_dir=args.data_dir,
        storage_port=args.storage_port,
        upload_port=args.upload_port,
    )


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> argparse.ArgumentParser:
    """A subcommand with its summary, description and exit codes from `helptext.COMMANDS`."""
    text = COMMANDS[name]
    return commands.add_parser(
        name,
        help=text.summary,
        description=text.description,
        epilog=text.epilog,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heygen-watcher",
        description="Watch drop folders and upload what lands there to HeyGen.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # `heygen-watcher --print-completion bash|zsh`: completion generated from this parser.
    shtab.add_argument_to(parser, ["--print-completion"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(commands, "run")
    _add_common(run)
    run.add_argument(
        "--sandbox", action="store_true", help="the one-minute tour: embedded sandbox, ./drop"
    )
    _add_rebuild_journal(run)
    run.set_defaults(handler=cmd_run)

    scan = _command(commands, "scan")
    _add_common(scan)
    scan.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be uploaded or refused and why; touch nothing",
    )
    _add_rebuild_journal(scan)
    _add_wait_for_api(scan)
    scan.set_defaults(handler=cmd_scan)

    upload = _command(commands, "upload")
    _add_common(upload)
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument(
        "--force",
        action="store_true",
        help="upload again even if the journal says these bytes were uploaded "
        "(the sidecar keeps previous_asset_id)",
    )
    upload.set_defaults(handler=cmd_upload)

    status = _command(commands, "status")
    _add_common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    retry = _command(commands, "retry")
    _add_common(retry)
    retry.add_argument("paths", nargs="*", metavar="PATH")
    _add_wait_for_api(retry)
    retry.set_defaults(handler=cmd_retry)

    check = _command(commands, "check-config")
    _add_common(check)
    check.add_argument(
        "--for-service",
        action="store_true",
        help="also print the ReadWritePaths= line for the systemd drop-in",
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="prove the key with one read-only API call",
    )
    check.set_defaults(handler=cmd_check_config)

    probe = _command(commands, "probe")
    _add_common(probe)
    probe.set_defaults(handler=cmd_probe)

    sandbox = _command(commands, "sandbox")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765, help="API port (0: any free port)")
    sandbox.add_argument("--storage-port", type=int, default=0, help="storage port (0: any)")
    sandbox.add_argument("--upload-port", type=int, default=0, help="upload host port (0: any)")
    sandbox.add_argument("--api-key", default="sandbox", help="the key the sandbox accepts")
    sandbox.add_argument("--data-dir", type=Path, default=None, help="keep received bytes here")
    sandbox.add_argument("-v", "--verbose", action="count", default=0)
    sandbox.add_argument("--log-format", choices=("human", "json"), default="human")
    sandbox.set_defaults(handler=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_format)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        for problem in error.problems:
            print(f"heygen-watcher: config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (JournalError, StateLocked) as error:
        print(f"heygen-watcher: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ApiKeyError, NoConfig) as error:
        print(f"heygen-watcher: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as error:
        print(f"heygen-watcher: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # an unexpected failure: one clear line, detail with -v
        log.debug("fatal error", exc_info=True)
        print(f"heygen-watcher: fatal: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
