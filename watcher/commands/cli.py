"""Command line: ``heygen-watcher COMMAND`` (also ``python -m watcher``).

The grammar is in `parser`, each command's body in its own module, the exit codes in `exits`.
Expected errors print one clear line, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from watcher.commands.configpath import NoConfig
from watcher.commands.exits import EXIT_FAILED, EXIT_USAGE
from watcher.commands.parser import build_parser
from watcher.config import ConfigError
from watcher.config.apikey import ApiKeyError
from watcher.service.logsetup import setup_logging
from watcher.state.journal import JournalError
from watcher.state.lock import StateLocked

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("watcher")


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
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # an unexpected failure: one clear line, detail with -v
        log.debug("fatal error", exc_info=True)
        print(f"heygen-watcher: fatal: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
