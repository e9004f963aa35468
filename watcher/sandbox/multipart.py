"""A strict multipart/form-data parser (RFC 7578) for bodies already in memory."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

MAX_BOUNDARY = 70
CRLF = b"\r\n"


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def boundary_of(content_type: str | None) -> str:
    """The boundary declared by a multipart/form-data Content-Type header."""
    message = Message()
    message["Content-Type"] = content_type or ""
    if not content_type or message.get_content_type() != "multipart/form-data":
        raise MultipartError("Content-Type must be multipart/form-data")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= MAX_BOUNDARY:
        raise MultipartError("multipart/form-data needs a boundary of 1 to 70 characters")
    return boundary


def parse(body: bytes, boundary: str) -> dict[str, Part]:
    """Split a body into its named parts; anything out of place is an error."""
    delimiter = b"--" + boundary.encode("latin-1")
    if not body.startswith(delimiter + CRLF):
        raise MultipartError("body does not start with the boundary")
    separator = CRLF + delimiter
    parts: dict[str, Part] = {}
    position = len(delimiter) + len(CRLF)
    while True:
        end = body.find(separator, position)
        if end < 0:
            raise MultipartError("closing boundary missing")
        part = _parse_part(body[position:end])
        if part.name in parts:
            raise MultipartError(f"part {part.name!r} appears twice")
        parts[part.name] = part
        after = end + len(separator)
        if body[after : after + 2] == b"--":
            if body[after + 2 :] not in (b"", CRLF):
                raise MultipartError("data after the closing boundary")
            return parts
        if body[after : after + 2] != CRLF:
            raise MultipartError("boundary not followed by CRLF")
        position = after + 2


def _parse_part(raw: bytes) -> Part:
    head, found, data = raw.partition(CRLF + CRLF)
    if not found:
        raise MultipartError("part headers not terminated by an empty line")
    headers = _parse_headers(head)
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise MultipartError("part without Content-Disposition")
    message = Message()
    message["Content-Disposition"] = disposition
    if message.get_content_disposition() != "form-data":
        raise MultipartError("part disposition must be form-data")
    name = message.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise MultipartError("part without a name")
    return Part(name, message.get_filename(), headers.get("content-type"), data)


def _parse_headers(head: bytes) -> dict[str, str]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise MultipartError("part headers are not UTF-8") from None
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise MultipartError(f"malformed part header: {line!r}")
        headers[name.lower()] = value.strip()
    return headers
