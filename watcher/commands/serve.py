"""`run` (the daemon, or the tour with `--sandbox`), `sandbox`, and the journal's rebuild."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.commands.configpath import resolve_config_path
from watcher.config import Config, load_config

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("watcher")


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
                "appear beside them (phone photos and videos, voice memos and the like are "
                "converted first).\nPress Ctrl-C to stop.",
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
