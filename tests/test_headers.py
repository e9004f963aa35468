"""Response headers read without the email package give exactly what `http.client` gives:
the same names, values, order, payload and defects, and the same errors past its limits."""

from __future__ import annotations

import email.parser
import http.client
import io

import pytest

from watcher.heygen import headers


def stdlib_parse(block: bytes) -> http.client.HTTPMessage:
    """`http.client.parse_headers` as the standard library writes it (it may be replaced)."""
    lines = []
    fp = io.BytesIO(block)
    while True:
        line = fp.readline(65537)
        lines.append(line)
        if line in (b"\r\n", b"\n", b""):
            break
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)


BLOCKS = [
    # Plain lines: read directly.
    b"\r\n",
    b"Content-Type: application/json\r\nContent-Length: 17\r\n\r\n",
    b"A:b\r\nB:  c d \r\nA: e\r\n\r\n",
    b"X-Empty:\r\n\r\n",
    b"A: b\n\n",
    b"A: caf\xe9\r\n\r\n",
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nthe body is not read",
    b'ETag: "abc:def"\r\nx-amz-request-id: 1\r\n\r\n',
    # Anything else: the email parser's own result.
    b"A: b\r\n folded\r\n\r\n",
    b"A: b\r\n\tfolded\r\n\r\n",
    b"No colon here\r\nA: b\r\n\r\n",
    b"From someone: y\r\n\r\n",
    b"Na me: v\r\n\r\n",
    b"\xe9: a\r\n\r\n",
    b"A: b\r\r\n\r\n",
    b"A: b\rC: d\r\n\r\n",
    b"A: b\r\n",  # the stream ends before the blank line
    b"",
]


@pytest.mark.parametrize("block", BLOCKS)
def test_headers_are_what_http_client_makes(block: bytes) -> None:
    expected = stdlib_parse(block)
    got = headers.parse_headers(io.BytesIO(block))
    assert type(got) is type(expected)
    assert got.items() == expected.items()
    assert got.get_payload() == expected.get_payload()
    assert [type(defect) for defect in got.defects] == [type(d) for d in expected.defects]


def test_the_rest_of_the_stream_is_left_unread() -> None:
    fp = io.BytesIO(b"A: b\r\n\r\nbody")
    headers.parse_headers(fp)
    assert fp.read() == b"body"


def test_http_clients_limits_hold() -> None:
    with pytest.raises(http.client.LineTooLong):
        headers.parse_headers(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n"))
    many = b"".join(b"H%d: v\r\n" % number for number in range(101)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        headers.parse_headers(io.BytesIO(many))


def test_responses_are_read_with_it() -> None:
    headers.install()
    assert http.client.parse_headers is headers.parse_headers
