"""Asset routes of the API: v1 presigned slots, v3 direct uploads, batches and multipart."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watcher.sandbox.context import Context, idempotent, json_fingerprint, signed_headers
from watcher.sandbox.envelopes import json_response
from watcher.sandbox.exchange import BodyError, Exchange, Response
from watcher.sandbox.limits import (
    MAX_BATCH_FILES,
    MULTIPART_MAX_BYTES,
    V1_TYPES,
    V3_TYPES,
    max_bytes,
)
from watcher.sandbox.multipart import MultipartError, boundary_of, parse
from watcher.sandbox.state import V1_PRESIGNED, V3_DIRECT, Batch, ItemError, Slot
from watcher.sandbox.validation import ApiError, Fields, body_error, invalid, read_json_object

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Batch items, as HeyGen's read model names their statuses.
ITEM_STATUSES = ("queued", "processing", "completed", "failed")
# `limit` of a paginated read: 1 to 100.
MAX_PAGE_ITEMS = 100


def unsupported(content_type: str, param: str) -> ApiError:
    return ApiError(400, f"unsupported content_type: {content_type}", "invalid_request", param)


def too_large(size: int, content_type: str, param: str) -> ApiError:
    message = f"{size} bytes exceeds the {max_bytes(content_type)} byte limit for {content_type}"
    return ApiError(413, message, "payload_too_large", param)


# v1 ----------------------------------------------------------------------------------------


def create_v1_asset(ctx: Context, exchange: Exchange) -> Response:
    content_type = Fields(read_json_object(exchange)).text("content_type")
    if content_type not in V1_TYPES:
        raise unsupported(content_type, "content_type")
    slot = ctx.state.new_slot(V1_PRESIGNED, content_type)
    data = {"url": ctx.upload_url(slot), "asset_id": slot.asset_id}
    return json_response(200, {"error": None, "data": data})


# v3 direct uploads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectUpload:
    filename: str
    content_type: str
    size_bytes: int
    checksum_sha256: str | None


def read_direct_upload(fields: Fields) -> DirectUpload:
    filename = fields.text("filename")
    content_type = fields.text("content_type")
    if content_type not in V3_TYPES:
        raise unsupported(content_type, fields.param("content_type"))
    size = fields.integer("size_bytes", minimum=1) or 0
    if size > max_bytes(content_type):
        raise too_large(size, content_type, fields.param("size_bytes"))
    checksum = fields.string("checksum_sha256", required=False)
    if checksum is not None and not SHA256_HEX.fullmatch(checksum):
        raise invalid(fields.param("checksum_sha256"), "must be 64 lowercase hex digits")
    return DirectUpload(filename, content_type, size, checksum)


def open_direct_slot(ctx: Context, upload: DirectUpload) -> Slot:
    return ctx.state.new_slot(
        V3_DIRECT,
        upload.content_type,
        size_bytes=upload.size_bytes,
        checksum_sha256=upload.checksum_sha256,
        filename=upload.filename,
    )


def slot_payload(ctx: Context, slot: Slot) -> dict[str, Any]:
    upload_headers = {"Content-Type": slot.content_type}
    if slot.checksum_sha256:
        upload_headers["x-amz-checksum-sha256"] = signed_headers(slot)["x-amz-checksum-sha256"]
    return {
        "asset_id": slot.asset_id,
        "upload_url": ctx.upload_url(slot),
        "upload_headers": upload_headers,
        "expires_in_seconds": ctx.settings.url_ttl_seconds,
        "max_bytes": max_bytes(slot.content_type),
        "status": "pending_upload",
    }


def create_direct_upload(ctx: Context, exchange: Exchange) -> Response:
    # Idempotency-Key is not documented here: ignored, so a replay opens another slot.
    upload = read_direct_upload(Fields(read_json_object(exchange)))
    return json_response(201, {"data": slot_payload(ctx, open_direct_slot(ctx, upload))})


# Completion status of an asset still being ingested, and of one ready for videos. HeyGen's
# schema shows `processing`; the ready value is not documented (batch items say `completed`).
ASSET_PROCESSING = "processing"
ASSET_COMPLETED = "completed"


def complete_asset(ctx: Context, exchange: Exchange, asset_id: str) -> Response:
    """Idempotent by nature: completing again answers the asset's current state."""
    body = read_json_object(exchange)
    checksum = Fields(body).string("checksum_sha256", required=False)
    if checksum is not None and not SHA256_HEX.fullmatch(checksum):
        raise invalid("checksum_sha256", "must be 64 lowercase hex digits")
    slot = ctx.state.slot(asset_id)
    if slot is None or slot.protocol != V3_DIRECT:
        raise ApiError(404, f"asset not found: {asset_id}", "not_found")
    asset = ctx.state.stored(asset_id)
    if asset is None:
        raise ApiError(409, "the upload has not been received yet", "conflict")
    if checksum is not None and checksum != asset.sha256:
        # HeyGen documents no code for this: the generic one for its status.
        raise ApiError(
            400,
            "checksum_sha256 does not match the uploaded bytes",
            "invalid_request",
            "checksum_sha256",
        )
    ctx.state.mark_completed(slot)
    processing = ctx.state.still_processing(slot)
    data = {
        "asset_id": asset_id,
        "url": ctx.asset_url(asset_id),
        "mime_type": asset.content_type,
        "size_bytes": asset.size,
        "status": ASSET_PROCESSING if processing else ASSET_COMPLETED,
    }
    return json_response(200, {"data": data})


# v3 batches ----------------------------------------------------------------------------------


def create_batch(ctx: Context, exchange: Exchange) -> Response:
    body = read_json_object(exchange)
    fields = Fields(body)
    files = fields.array("files")
    if not 1 <= len(files) <= MAX_BATCH_FILES:
        raise invalid("files", f"must hold 1 to {MAX_BATCH_FILES} items, not {len(files)}")
    uploads = [read_direct_upload(Fields.of(item, f"files[{i}]")) for i, item in enumerate(files)]
    title = fields.string("title", required=False, non_empty=False)

    def perform() -> tuple[int, dict[str, Any]]:
        slots = [open_direct_slot(ctx, upload) for upload in uploads]
        batch = ctx.state.new_batch(slots, title)
        items = [slot_payload(ctx, slot) for slot in slots]
        return 201, {"data": {"batch_id": batch.batch_id, "items": items}}

    return idempotent(ctx, exchange, json_fingerprint(body), perform)


def find_batch(ctx: Context, batch_id: str, param: str | None = None) -> Batch:
    batch = ctx.state.batch(batch_id)
    if batch is None:
        raise ApiError(404, f"batch not found: {batch_id}", "not_found", param)
    return batch


def complete_batch(ctx: Context, exchange: Exchange) -> Response:
    body = read_json_object(exchange)
    batch_id = Fields(body).text("batch_id")

    def perform() -> tuple[int, dict[str, Any]]:
        batch = find_batch(ctx, batch_id, "batch_id")
        ctx.state.complete_batch(batch)
        return 202, {"data": {"batch_id": batch.batch_id, "status": "processing"}}

    return idempotent(ctx, exchange, json_fingerprint(body), perform)


def read_model_item(
    item_index: int, status: str, asset_id: str | None, error: ItemError | None
) -> dict[str, Any]:
    """One item of HeyGen's batch read model. It is shared with video batches, so the id is
    named ``video_id`` even for assets, and it is null until the item exists."""
    item: dict[str, Any] = {"item_index": item_index, "status": status, "video_id": asset_id}
    if error is not None:
        item["error"] = {"code": error.code, "message": error.message}
    return item


def batch_items(ctx: Context, batch: Batch) -> list[dict[str, Any]]:
    items = []
    for index, asset_id in enumerate(batch.asset_ids):
        status, error = ctx.state.batch_item(batch, asset_id)
        # The asset exists once ingestion started: not while queued, not when it never arrived.
        exists = status in ("processing", "completed") or (
            status == "failed" and asset_id not in batch.missing
        )
        items.append(read_model_item(index, status, asset_id if exists else None, error))
    return items


def batch_status(item_statuses: list[str]) -> str:
    """The batch as a whole: processing while any item is, failed when every item failed."""
    if any(status in ("queued", "processing") for status in item_statuses):
        return "processing"
    if item_statuses and all(status == "failed" for status in item_statuses):
        return "failed"
    return "completed"


PAGE_PARAMS = ("limit", "token")


def page_of(
    ctx: Context, exchange: Exchange, listing: str, items: list[dict[str, Any]], *extra: str
) -> dict[str, Any]:
    """``items`` cut to the page that ``limit`` and ``token`` ask for, with ``has_more`` and
    ``next_token``; unknown, repeated or malformed query parameters are refused."""
    params = exchange.params
    for name, values in params.items():
        if name not in (*PAGE_PARAMS, *extra):
            raise invalid(name, "is not a known query parameter")
        if len(values) != 1:
            raise invalid(name, "must be given once")
    limit = ctx.settings.batch_page_size
    if "limit" in params:
        text = params["limit"][0]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE_ITEMS:
            raise invalid("limit", f"must be an integer from 1 to {MAX_PAGE_ITEMS}")
        limit = int(text)
    offset = 0
    if "token" in params:
        cursor = ctx.state.cursor(params["token"][0])
        if cursor is None or cursor.listing != listing:
            raise invalid("token", "is not a token this listing issued")
        offset = cursor.offset
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return {
        "items": page,
        "has_more": more,
        "next_token": ctx.state.new_cursor(listing, offset + limit) if more else None,
    }


def get_batch(ctx: Context, exchange: Exchange, batch_id: str) -> Response:
    batch = find_batch(ctx, batch_id)
    items = batch_items(ctx, batch)
    statuses = [item["status"] for item in items]
    counts = {status: statuses.count(status) for status in ITEM_STATUSES}
    data = {
        "batch_id": batch_id,
        "status": batch_status(statuses),
        "total_items": len(items),
        "counts_by_status": counts,
        "created_at": iso_time(batch.created_at),
        **page_of(ctx, exchange, f"batch {batch_id}", items),
    }
    return json_response(200, {"data": data})


def get_statuses(ctx: Context, exchange: Exchange) -> Response:
    """``GET /v3/assets/statuses?asset_ids=a,b&batch_ids=c``: the batch read model for single
    assets (in the order asked) and then for every item of each batch asked."""
    asked = {name: _id_list(exchange, name) for name in ("asset_ids", "batch_ids")}
    total = sum(len(ids) for ids in asked.values())
    if not 1 <= total <= MAX_PAGE_ITEMS:
        raise invalid("asset_ids", f"give 1 to {MAX_PAGE_ITEMS} ids in asset_ids and batch_ids")
    items: list[dict[str, Any]] = []
    for index, asset_id in enumerate(asked["asset_ids"]):
        items.append(asset_item(ctx, index, asset_id))
    for batch_id in asked["batch_ids"]:
        batch = ctx.state.batch(batch_id)
        if batch is None:
            missing = ItemError("not_found", f"batch not found: {batch_id}")
            items.append(read_model_item(0, "not_found", None, missing))
        else:
            items.extend(batch_items(ctx, batch))
    listing = "statuses " + exchange.query
    page = page_of(ctx, exchange, listing, items, "asset_ids", "batch_ids")
    return json_response(200, {"data": page})


def asset_item(ctx: Context, index: int, asset_id: str) -> dict[str, Any]:
    slot = ctx.state.slot(asset_id)
    if slot is None:
        return read_model_item(index, "not_found", asset_id, None)
    batch = ctx.state.batch(slot.batch_id or "")
    if batch is not None:
        status, error = ctx.state.batch_item(batch, asset_id)
        if status != "completed" and slot.completed:
            status, error = "completed", None
    else:
        status = "completed" if slot.completed else "queued"
        error = None
    return read_model_item(index, status, asset_id, error)


def _id_list(exchange: Exchange, name: str) -> list[str]:
    values = exchange.params.get(name, [])
    if len(values) > 1:
        raise invalid(name, "must be given once, as a comma-separated list")
    ids = [part.strip() for part in values[0].split(",")] if values else []
    if any(not part for part in ids):
        raise invalid(name, "must be a comma-separated list of ids")
    return ids


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# v3 multipart --------------------------------------------------------------------------------


def read_multipart(exchange: Exchange) -> tuple[bytes, str]:
    """The raw body and its boundary, refused from the headers alone when too big or unframed."""
    try:
        length = exchange.required_length()
    except BodyError as error:
        raise body_error(error) from None
    if length > MULTIPART_MAX_BYTES:
        raise ApiError(
            413,
            f"multipart uploads are limited to {MULTIPART_MAX_BYTES} bytes",
            "payload_too_large",
            "file",
        )
    try:
        boundary = boundary_of(exchange.header("Content-Type"))
    except MultipartError as error:
        raise ApiError(400, str(error), "invalid_request") from None
    try:
        return exchange.read_body(MULTIPART_MAX_BYTES), boundary
    except BodyError as error:
        raise body_error(error) from None


@dataclass(frozen=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


def file_part(raw: bytes, boundary: str) -> FilePart:
    try:
        part = parse(raw, boundary).get("file")
    except MultipartError as error:
        raise ApiError(400, f"malformed multipart body: {error}", "invalid_request") from None
    if part is None:
        raise invalid("file", "is required: send the bytes in a part named file")
    if not part.filename:
        raise invalid("file", "part needs a filename")
    content_type = (part.content_type or "").split(";")[0].strip().lower()
    if content_type not in V3_TYPES:
        raise unsupported(content_type or "(none)", "file")
    if not part.data:
        raise invalid("file", "is empty")
    if len(part.data) > max_bytes(content_type):
        raise too_large(len(part.data), content_type, "file")
    return FilePart(part.filename, content_type, part.data)


def upload_multipart(ctx: Context, exchange: Exchange) -> Response:
    """Idempotency-Key is not documented here: ignored, so a replay stores the file again."""
    raw, boundary = read_multipart(exchange)
    part = file_part(raw, boundary)
    received = ctx.state.incoming_path()
    received.write_bytes(part.data)
    digest = hashlib.sha256(part.data).hexdigest()
    asset = ctx.state.store_upload(
        received, part.content_type, part.filename, len(part.data), digest
    )
    data = {
        "asset_id": asset.asset_id,
        "url": ctx.asset_url(asset.asset_id),
        "mime_type": asset.content_type,
        "size_bytes": asset.size,
    }
    return json_response(201, {"data": data})
