"""A response's header block read without the email package, for the common case.

`http.client` (under urllib3) parses every response's headers with `email.parser`, a general
RFC 2822 parser that builds a feed parser, a line buffer and a policy per response. For the
handful of plain ``Name: value`` lines an API or storage answer carries that was about a
third of the CPU of a small request. `parse_headers` reads the block exactly as
`http.client` does (the same line and count limits, the same errors) and stores plain lines
exactly as the email parser would (``set_raw(name, value)`` after the same stripping); any
block with a line that is not plain (a folded continuation, a line without a colon, a name
with a space or a non-ASCII byte) is handed to the email parser itself, so the result is
always what `http.client` would have made.
"""

from __future__ import annotations

import email.parser
import http.client
import re
from typing import IO, Any

# http.client's own limits (not exported under these names).
_MAX_LINE = 65536
_MAX_HEADERS = 100
_END = (b"\r\n", b"\n", b"")
# What the email feed parser takes as a header line: printable ASCII but the colon, then ':'.
_PLAIN = re.compile(r"[\x21-\x39\x3b-\x7e]+:")

_installed = False


def parse_headers(fp: IO[bytes], _class: type[Any] = http.client.HTTPMessage) -> Any:
    """What `http.client.parse_headers` returns, built directly for plain lines."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in _END:
            break
    if lines[-1] == b"":
        # The block ended with the stream, not a blank line: the email parser's own path.
        return _email_parsed(lines, _class)
    message = _class()
    for line in lines[:-1]:
        text = line.decode("iso-8859-1")
        body = text[:-2] if text.endswith("\r\n") else text[:-1]
        found = _PLAIN.match(body)
        if found is None or "\r" in body:
            return _email_parsed(lines, _class)
        message.set_raw(found.group()[:-1], body[found.end() :].lstrip(" \t"))
    message.set_payload("")  # what is left after the headers: nothing, as the parser says
    return message


def _email_parsed(lines: list[bytes], _class: type[Any]) -> Any:
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=_class).parsestr(text)


def install() -> None:
    """Make `http.client` (and so urllib3) read response headers with `parse_headers`.

    Process-wide, since `http.client.HTTPResponse.begin` looks the function up in its module;
    the result is the same object either way, so every other user of `http.client` in the
    process (the sandbox's request parsing, in tests) is unaffected but for the speed."""
    global _installed
    if not _installed:
        http.client.parse_headers = parse_headers  # type: ignore[assignment]
        _installed = True
