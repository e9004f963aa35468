"""The command line's grammar: every subcommand, its options and its handler.

Summaries, descriptions and exit codes come from `helptext.COMMANDS`; each handler lives
with its command (`serve`, `scan`, `handed`, `checks`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import shtab

from watcher import __version__
from watcher.commands.checks import cmd_check_config, cmd_probe, cmd_status
from watcher.commands.configpath import ENV_NAME, SYSTEM_CONFIG, TOUR_CONFIG
from watcher.commands.handed import cmd_retry, cmd_upload
from watcher.commands.helptext import COMMANDS
from watcher.commands.scan import cmd_scan
from watcher.commands.serve import cmd_run, cmd_sandbox

# How long `scan` and `retry` probe an unreachable API before they give up: a short outage (a
# restart, a network blip) does not fail a scheduled scan; a long one ends it with
# EXIT_UNREACHABLE.
DEFAULT_WAIT_FOR_API_SECONDS = 300.0


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
        help="prove the key with one read-only API call; send a test notification to each target",
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
