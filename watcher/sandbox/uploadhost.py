"""The upload host (``upload.heygen.com``): HeyGen's documented one-request upload.

``POST /v1/asset`` with the raw file bytes as the body, the file's MIME type as
``Content-Type`` and the key in ``X-API-KEY``; the answer uses the old ``code``/``data``
envelope with the asset's id in ``data.id``. Strict like the rest of the sandbox: a body
without ``Content-Length`` or sent chunked is refused before it is read, so is a type outside
the five the reference lists (no ``audio/wav``), and an empty body.
"""

from __future__ import annotations

import contextlib
import hmac
import os

from watcher.sandbox.context import Context
from watcher.sandbox.envelopes import (
    CODE,
    CODE_OK,
    api_error_payload,
    json_response,
    raw_body_response,
    reason,
)
from watcher.sandbox.exchange import BodyError, Exchange, Response
from watcher.sandbox.faults import Fault
from watcher.sandbox.limits import UPLOAD_HOST_TYPES, max_bytes
from watcher.sandbox.state import V1_UPLOAD
from watcher.sandbox.storage import receive
from watcher.sandbox.validation import ApiError, body_error

PATH = "/v1/asset"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, api_error_payload(CODE, status, message), headers)


class UploadApp:
    name = "upload"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def admin(self, exchange: Exchange) -> Response | None:
        return None

    def rate_key(self, exchange: Exchange) -> str | None:
        # The same key's requests to the API host and here share one limit.
        return exchange.header("X-API-KEY") or ""

    def handle(self, exchange: Exchange) -> Response:
        try:
            self._authenticate(exchange)
            if exchange.path != PATH:
                raise ApiError(404, f"no such endpoint: {exchange.path}")
            if exchange.method != "POST":
                raise ApiError(405, f"{exchange.method} is not allowed on {exchange.path}")
            return upload_asset(self.ctx, exchange)
        except ApiError as error:
            return error_response(error.status, error.message)

    def fault_response(self, exchange: Exchange, fault: Fault) -> Response:
        status = fault.status or 500
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.body is not None:
            return raw_body_response(status, fault.body, headers)
        return error_response(status, reason(status), headers)

    def internal_error(self, exchange: Exchange) -> Response:
        return error_response(500, "internal error")

    def _authenticate(self, exchange: Exchange) -> None:
        given = exchange.header("X-API-KEY")
        expected = self.ctx.settings.api_key
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "invalid or missing X-API-KEY")


def upload_asset(ctx: Context, exchange: Exchange) -> Response:
    """Every refusal that the headers alone allow comes before a byte of the body is read."""
    try:
        length = exchange.required_length()
    except BodyError as error:
        raise body_error(error) from None
    content_type = (exchange.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type not in UPLOAD_HOST_TYPES:
        shown = content_type or "(none)"
        raise ApiError(
            400, f"unsupported Content-Type {shown}; accepted: {', '.join(UPLOAD_HOST_TYPES)}"
        )
    if length == 0:
        raise ApiError(400, "the body is empty: send the file's bytes")
    if length > max_bytes(content_type):
        raise ApiError(413, f"{length} bytes exceeds the limit for {content_type}")
    received = ctx.state.incoming_path()
    try:
        digest = receive(exchange, received)
        asset = ctx.state.store_upload(
            received, content_type, None, exchange.body_read, digest.hex(), protocol=V1_UPLOAD
        )
    except BodyError:
        raise ApiError(400, "fewer bytes than Content-Length arrived") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(received)
    data = {"id": asset.asset_id, "url": ctx.asset_url(asset.asset_id)}
    return json_response(200, {"code": CODE_OK, "data": data})
