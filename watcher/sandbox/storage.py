"""The storage listener: S3-like presigned PUTs, public asset reads and signed video downloads."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
from pathlib import Path

from watcher.sandbox.context import Context, signed_headers
from watcher.sandbox.envelopes import raw_body_response, reason, s3_code, s3_error_response
from watcher.sandbox.exchange import BodyError, Exchange, Response
from watcher.sandbox.faults import Fault
from watcher.sandbox.limits import max_bytes
from watcher.sandbox.media import THUMBNAIL_PNG, VIDEO_MP4
from watcher.sandbox.signing import Verdict
from watcher.sandbox.spool import Spool
from watcher.sandbox.state import V3_DIRECT, Slot

UPLOAD_PATH = re.compile(r"/uploads/(?P<asset_id>[^/]+)")
ASSET_PATH = re.compile(r"/asset/(?P<asset_id>[^/]+)")
VIDEO_PATH = re.compile(r"/videos/(?P<video_id>[^/.]+)\.(?P<kind>mp4|png)")
CHECKSUM_HEADER = "x-amz-checksum-sha256"
READ_METHODS = ("GET", "HEAD")


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def signature_mismatch(message: str) -> S3Error:
    return S3Error(403, "SignatureDoesNotMatch", message)


class StorageApp:
    name = "storage"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def admin(self, exchange: Exchange) -> Response | None:
        return None

    def rate_key(self, exchange: Exchange) -> str | None:
        # Presigned URLs carry no key: the storage is not rate limited.
        return None

    def handle(self, exchange: Exchange) -> Response:
        try:
            return self._route(exchange)
        except S3Error as error:
            return s3_error_response(error.status, error.code, error.message)

    def fault_response(self, exchange: Exchange, fault: Fault) -> Response:
        status = fault.status or 500
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.body is not None:
            return raw_body_response(status, fault.body, headers)
        return s3_error_response(status, s3_code(status), reason(status), headers)

    def internal_error(self, exchange: Exchange) -> Response:
        return s3_error_response(500, "InternalError", "We encountered an internal error.")

    def _route(self, exchange: Exchange) -> Response:
        method, path = exchange.method, exchange.path
        if match := UPLOAD_PATH.fullmatch(path):
            _allow(method, ("PUT",))
            return put_upload(self.ctx, exchange, match["asset_id"])
        if match := ASSET_PATH.fullmatch(path):
            _allow(method, READ_METHODS)
            return get_asset(self.ctx, match["asset_id"])
        if match := VIDEO_PATH.fullmatch(path):
            _allow(method, READ_METHODS)
            return get_video(self.ctx, exchange, match["video_id"], match["kind"])
        raise S3Error(404, "NoSuchKey", "The specified key does not exist.")


def _allow(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise S3Error(405, "MethodNotAllowed", f"{method} is not allowed on this resource.")


# PUT -----------------------------------------------------------------------------------------


def check_put_headers(ctx: Context, exchange: Exchange, asset_id: str) -> Slot:
    """Every refusal S3 makes from the request line and headers, in S3's order."""
    if exchange.header("X-Api-Key") is not None:
        raise S3Error(400, "InvalidRequest", "API credentials must not be sent to storage.")
    try:
        length = exchange.required_length()
    except BodyError as error:
        if error.kind == "chunked":
            raise S3Error(
                501, "NotImplemented", "Transfer-Encoding: chunked is not implemented."
            ) from None
        if error.kind == "missing_length":
            raise S3Error(
                411, "MissingContentLength", "You must provide the Content-Length HTTP header."
            ) from None
        raise S3Error(400, "InvalidArgument", str(error)) from None
    slot = ctx.state.slot(asset_id)
    if slot is None:
        raise S3Error(403, "AccessDenied", "This upload URL is not valid (unknown slot).")
    check_signature(ctx, exchange, slot)
    check_signed_headers(exchange, slot, length)
    if length > max_bytes(slot.content_type):
        raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum size.")
    return slot


def check_signature(ctx: Context, exchange: Exchange, slot: Slot) -> None:
    verdict = ctx.signer.verify("PUT", exchange.path, exchange.params, signed_headers(slot))
    if verdict is Verdict.UNSIGNED:
        raise S3Error(403, "AccessDenied", "Query-string authentication is required.")
    if verdict is Verdict.MISMATCH:
        raise signature_mismatch("The request signature we calculated does not match.")
    if verdict is Verdict.EXPIRED:
        raise S3Error(403, "AccessDenied", "Request has expired")


def check_signed_headers(exchange: Exchange, slot: Slot, length: int) -> None:
    if exchange.header("Content-Type") != slot.content_type:
        raise signature_mismatch("Content-Type does not match the signed Content-Type.")
    if slot.protocol != V3_DIRECT:
        return
    if length != slot.size_bytes:
        raise signature_mismatch("Content-Length does not match the signed size.")
    expected = signed_headers(slot).get(CHECKSUM_HEADER)
    if expected is not None and exchange.header(CHECKSUM_HEADER) != expected:
        raise signature_mismatch(f"{CHECKSUM_HEADER} does not match the signed value.")


def declared_digest(exchange: Exchange) -> bytes | None:
    """The sha256 the client declared, which S3 verifies whenever it is sent."""
    value = exchange.header(CHECKSUM_HEADER)
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise S3Error(400, "InvalidDigest", f"{CHECKSUM_HEADER} is not a base64 sha256 digest.")
    return digest


def receive(exchange: Exchange, target: Path) -> bytes:
    """Stream the body to ``target`` while hashing it; returns the sha256 digest.

    Memory stays at a few 1 MiB buffers whatever the size; hashlib releases the GIL, so
    receiving, hashing and the spool's disk writes run in parallel.
    """
    hasher = hashlib.sha256()
    length = exchange.required_length()
    with Spool(target) as spool:
        while exchange.body_read < length:
            buffer = spool.take()
            got = exchange.read_into(memoryview(buffer))
            hasher.update(memoryview(buffer)[:got])
            spool.put(buffer, got)
    return hasher.digest()


def put_upload(ctx: Context, exchange: Exchange, asset_id: str) -> Response:
    slot = check_put_headers(ctx, exchange, asset_id)
    expected_digest = declared_digest(exchange)
    received = ctx.state.incoming_path()
    try:
        digest = receive(exchange, received)
        if expected_digest is not None and digest != expected_digest:
            raise S3Error(400, "BadDigest", "The sha256 you specified did not match the data.")
        if not ctx.state.commit_put(slot, received, exchange.body_read, digest.hex()):
            raise S3Error(403, "AccessDenied", "This upload URL is no longer valid.")
    except BodyError:
        raise S3Error(400, "IncompleteBody", "Fewer bytes than Content-Length arrived.") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(received)
    # S3 sends the MD5 here; a digest prefix keeps PUTs from paying for a second hash.
    return Response(200, headers={"ETag": f'"{digest.hex()[:32]}"'})


# GET -----------------------------------------------------------------------------------------


def get_asset(ctx: Context, asset_id: str) -> Response:
    asset = ctx.state.stored(asset_id)
    try:
        if asset is None:
            raise FileNotFoundError(asset_id)
        stream = open(asset.path, "rb")  # noqa: SIM115 - closed after the response is sent
    except FileNotFoundError:
        raise S3Error(404, "NoSuchKey", "The specified key does not exist.") from None
    return Response(
        200,
        content_type=asset.content_type,
        headers={"ETag": f'"{asset.sha256[:32]}"'},
        file=stream,
    )


def get_video(ctx: Context, exchange: Exchange, video_id: str, kind: str) -> Response:
    verdict = ctx.signer.verify("GET", exchange.path, exchange.params, {})
    if verdict is Verdict.EXPIRED:
        raise S3Error(403, "AccessDenied", "Request has expired")
    if verdict is not Verdict.VALID:
        raise signature_mismatch("The request signature we calculated does not match.")
    video = ctx.state.video(video_id)
    if video is None or ctx.state.video_status(video) != "completed":
        raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
    if kind == "mp4":
        return Response(200, VIDEO_MP4, "video/mp4")
    return Response(200, THUMBNAIL_PNG, "image/png")
