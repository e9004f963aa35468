"""Error and success bodies in the shapes each API generation and S3 use."""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus
from typing import Any
from xml.sax.saxutils import escape

from watcher.sandbox.exchange import Response

V1 = "v1"  # v1 and v2: {"error": "...", "data": null}
CODE = "code"  # /v1/video_status.get: {"code": 100, "data": ..., "message": ...}
V3 = "v3"  # {"error": {"code": "...", "message": "...", "param": "..."}}

CODE_OK = 100
JSON = "application/json"
XML = "application/xml"

# v3 machine codes. HeyGen's schemas name these; the sandbox uses them where they apply.
DOCUMENTED_V3_CODES = (
    "insufficient_credit",
    "rate_limit_exceeded",
    "payload_too_large",
    "asset_not_available",
)
# For every other refusal HeyGen documents no code: a generic one named after the HTTP status
# (clients must not depend on them; the watcher does not).
GENERIC_V3_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_V3_CODES = {
    **GENERIC_V3_CODES,
    402: "insufficient_credit",
    413: "payload_too_large",
    429: "rate_limit_exceeded",
}
V3_CODES = frozenset((*DOCUMENTED_V3_CODES, *GENERIC_V3_CODES.values()))

_S3_CODES = {
    400: "InvalidRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    405: "MethodNotAllowed",
    411: "MissingContentLength",
    429: "SlowDown",
    500: "InternalError",
    501: "NotImplemented",
    503: "SlowDown",
}


def style_for(path: str) -> str:
    if path == "/v1/video_status.get":
        return CODE
    if path.startswith("/v3/"):
        return V3
    return V1


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def v3_code(status: int) -> str:
    return _V3_CODES.get(status) or reason(status).lower().replace(" ", "_").replace("-", "_")


def json_response(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, JSON, dict(headers or {}))


def api_error_payload(
    style: str, status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    if style == V3:
        if code is not None and code not in V3_CODES:
            raise ValueError(f"undocumented v3 error code {code!r}")
        error: dict[str, Any] = {"code": code or v3_code(status), "message": message}
        if param is not None:
            error["param"] = param
        return {"error": error}
    if style == CODE:
        # The old envelope carries its own numeric code; 100 alone means success.
        return {"code": status * 100 + 1, "data": None, "message": message}
    return {"error": message, "data": None}


def api_error_response(
    path: str,
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    payload = api_error_payload(style_for(path), status, message, code, param)
    return json_response(status, payload, headers)


def s3_code(status: int) -> str:
    return _S3_CODES.get(status) or reason(status).replace(" ", "")


def s3_error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    )
    return Response(status, body.encode(), XML, dict(headers or {}))


def raw_body_response(status: int, body: str, headers: dict[str, str]) -> Response:
    """A fault's verbatim body, labelled by what it looks like."""
    stripped = body.lstrip()
    if stripped.startswith("<"):
        content_type = XML
    elif stripped.startswith(("{", "[")):
        content_type = JSON
    else:
        content_type = "text/plain; charset=utf-8"
    return Response(status, body.encode(), content_type, dict(headers))
