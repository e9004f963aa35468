"""Command line: ``heygen-watcher COMMAND`` (also ``python -m watcher``).

Exit codes: 0 success, 1 some files failed, 2 usage or configuration error.
Expected errors print one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from watcher import __version__
from watcher.config import Config, ConfigError, load_config
from watcher.config.apikey import ApiKeyError, load_api_key
from watcher.service.logsetup import setup_logging
from watcher.state.journal import JournalError
from watcher.state.lock import StateLocked
from watcher.state.states import UNFINISHED

log = logging.getLogger("watcher")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """An expected failure: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _add_common(parser: argparse.ArgumentParser, *, config_required: bool = True) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, required=config_required, help="the YAML configuration file"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail (-vv)")
    parser.add_argument(
        "--log-format", choices=("human", "json"), default="human", help="log line format"
    )


def cmd_upload(args: argparse.Namespace) -> int:
    from watcher.commands.upload import OneShotUploader, exit_code, print_reports, summary
    from watcher.heygen.client import HeyGenClient
    from watcher.heygen.uploads import make_protocol

    config = load_config(args.config, need_folders=False)
    key = load_api_key(config.api)
    client = HeyGenClient(config.api, key)
    try:
        uploader = OneShotUploader(config, make_protocol(client))
        reports = uploader.run([Path(p) for p in args.files], config.api.concurrency)
    finally:
        client.close()
    print_reports(reports)
    if uploader.auth_failure is not None:
        print(
            f"heygen-watcher: the API refused the key ({uploader.auth_failure}); "
            f"key read from {key.origin}",
            file=sys.stderr,
        )
    print(summary(reports), file=sys.stderr)
    return exit_code(reports)


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
        config, key = tour_config(sandbox, workdir)
    elif args.config is None:
        raise CommandError("run needs -c CONFIG (or --sandbox for the built-in tour)")
    else:
        config_path = args.config
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
    from watcher.state.rebuild import rebuild

    count, kept = rebuild(config)
    kept_text = f"; the old journal was kept as {kept}" if kept else ""
    log.info("journal rebuilt from %d sidecar(s)%s", count, kept_text)


def cmd_scan(args: argparse.Namespace) -> int:
    from watcher.service.daemon import Daemon

    config = load_config(args.config)
    if args.rebuild_journal:
        rebuild_journal(config)
    stop = threading.Event()
    _install_signal_handlers(stop, threading.Event())
    daemon = Daemon(config)
    daemon.start(watch=False)
    bar = _progress_bar() if sys.stderr.isatty() else None
    watcher_thread = threading.Thread(target=daemon.wait_until_idle, args=(bar,), daemon=True)
    watcher_thread.start()
    while watcher_thread.is_alive() and not stop.wait(0.1):
        pass
    if bar is not None:
        sys.stderr.write("\n")
    daemon.stop()
    counts = daemon.final_counts()
    print(
        ", ".join(f"{count} {state}" for state, count in counts.items() if count) or "no files",
        file=sys.stderr,
    )
    return EXIT_FAILED if _unfinished(counts) or stop.is_set() else EXIT_OK


def _unfinished(counts: dict[str, int]) -> int:
    """Files a pass left without a final outcome (failed, waiting for a retry or a key)."""
    return sum(counts.get(state, 0) for state in UNFINISHED)


def _progress_bar() -> Callable[[int], None]:
    def show(waiting: int) -> None:
        sys.stderr.write(f"\r{waiting} file(s) in progress   ")
        sys.stderr.flush()

    return show


def cmd_status(args: argparse.Namespace) -> int:
    from watcher.commands.status import collect, render

    report = collect(load_config(args.config))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    from watcher.service.daemon import Daemon
    from watcher.state.journal import Journal
    from watcher.state.lock import StateLock

    config = load_config(args.config)
    paths = [str(Path(p).absolute()) for p in args.paths] or None
    journal = Journal(config.journal_path)
    try:
        marked = journal.mark_for_retry(paths) + journal.mark_videos_for_retry(paths)
    finally:
        journal.close()
    if StateLock(config.state_dir).held_by_other():
        print(f"{marked} file(s) marked for retry; the running daemon retries them within seconds")
        return EXIT_OK
    print(f"{marked} file(s) marked for retry; retrying now", file=sys.stderr)
    daemon = Daemon(config)
    daemon.start(watch=False)
    daemon.wait_until_idle(include_videos=True)
    daemon.stop()
    return EXIT_FAILED if _unfinished(daemon.final_counts()) else EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for warning in config.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(f"OK: {config.source}: {len(config.folders)} folder(s)")
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    from watcher.commands.probe import probe, render

    config = load_config(args.config, need_folders=False)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heygen-watcher",
        description="Watch drop folders and upload what lands there to HeyGen.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    upload = commands.add_parser("upload", help="upload the given files once and write sidecars")
    _add_common(upload)
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.set_defaults(handler=cmd_upload)

    run = commands.add_parser("run", help="watch the folders until stopped")
    _add_common(run, config_required=False)
    run.add_argument(
        "--sandbox", action="store_true", help="the one-minute tour: embedded sandbox, ./drop"
    )
    run.add_argument(
        "--rebuild-journal", action="store_true", help="rebuild the journal from the sidecars"
    )
    run.set_defaults(handler=cmd_run)

    scan = commands.add_parser("scan", help="one pass over every folder, then exit")
    _add_common(scan)
    scan.add_argument(
        "--rebuild-journal", action="store_true", help="rebuild the journal from the sidecars"
    )
    scan.set_defaults(handler=cmd_scan)

    status = commands.add_parser("status", help="what the journal says: counts, failures, pauses")
    _add_common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    retry = commands.add_parser("retry", help="retry failed files now (all, or the given ones)")
    _add_common(retry)
    retry.add_argument("paths", nargs="*", metavar="PATH")
    retry.set_defaults(handler=cmd_retry)

    check = commands.add_parser("check-config", help="validate a configuration file")
    _add_common(check)
    check.set_defaults(handler=cmd_check_config)

    probe = commands.add_parser(
        "probe", help="try each upload protocol with a tiny PNG; exit 0 if the configured one works"
    )
    _add_common(probe)
    probe.set_defaults(handler=cmd_probe)

    sandbox = commands.add_parser("sandbox", help="serve a local, strict HeyGen for testing")
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
    except ApiKeyError as error:
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
