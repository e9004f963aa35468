"""Log lines for people (journald adds the timestamps) or for machines (``--log-format json``).

Human lines carry an ISO 8601 timestamp with the time zone whenever stderr is not the journal
(a terminal, a file under nohup, a container's log): `JOURNAL_STREAM` names the journal's
stream, and only when stderr is that very stream are the timestamps left to journald.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from typing import Any

_STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class HumanFormatter(logging.Formatter):
    """``level message key=value ...`` with no timestamp of our own: journald adds one."""

    def __init__(self, timestamps: bool = False) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD_FIELDS}
        parts = [record.levelname.lower(), escape(record.getMessage())]
        parts.extend(f"{key}={_quote(value)}" for key, value in fields.items())
        line = " ".join(parts)
        if self.timestamps:
            line = iso_timestamp(record.created) + " " + line
        if record.exc_info:
            line += "\n" + _indented(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update({k: v for k, v in vars(record).items() if k not in _STANDARD_FIELDS})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        # json.dumps escapes C0 controls; these it leaves raw, and some readers split on them.
        return json.dumps(document, default=str, ensure_ascii=False).translate(_JSON_UNSAFE)


# Escaping of values from outside (file names, API messages) so that no log line can be forged
# or broken: C0 and C1 controls, DEL and the Unicode line and paragraph separators are written
# as escapes, and a backslash as two, so the escaped text reads back unambiguously.
_ESCAPES = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    ord("\\"): "\\\\",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
_JSON_UNSAFE = {code: f"\\u{code:04x}" for code in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)}


def escape(text: str) -> str:
    """``text`` on one line, with nothing in it that could end the line or fake another."""
    return text.translate(_ESCAPES)


def _indented(block: str) -> str:
    """A traceback: every line indented, so that none can pass for a log line of its own."""
    return "\n".join("  " + escape(line) for line in block.split("\n"))


def iso_timestamp(created: float) -> str:
    """``2026-11-24T19:05:03.123+01:00``: local time with its offset, to the millisecond."""
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


def stderr_is_journal() -> bool:
    """True when stderr is the journald stream systemd connected (``JOURNAL_STREAM`` is
    ``device:inode`` of that stream; a child whose stderr was redirected keeps the variable)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        info = os.fstat(sys.stderr.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def _quote(value: Any) -> str:
    text = str(value)
    escaped = escape(text)
    if escaped != text or not text or any(char in text for char in ' "='):
        return json.dumps(text, ensure_ascii=False).translate(_JSON_UNSAFE)
    return text


def setup_logging(verbosity: int = 0, log_format: str = "human") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # Under systemd stderr goes to journald, which stamps each line itself.
        handler.setFormatter(HumanFormatter(timestamps=not stderr_is_journal()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    # Our own detail at -v; library chatter (urllib3 connection logs) only at -vv.
    logging.getLogger("watcher").setLevel(logging.DEBUG if verbosity else logging.INFO)
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)
