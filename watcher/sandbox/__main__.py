"""``python -m watcher.sandbox``: run the sandbox in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from watcher.sandbox.sandbox import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m watcher.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="API port (0: any free port)")
    parser.add_argument("--storage-port", type=int, default=0, help="storage port (0: any)")
    parser.add_argument("--upload-port", type=int, default=0, help="upload host port (0: any)")
    parser.add_argument("--api-key", default="sandbox")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    return serve(
        args.host, args.port, args.api_key, args.data_dir, args.storage_port, args.upload_port
    )


if __name__ == "__main__":
    sys.exit(main())
