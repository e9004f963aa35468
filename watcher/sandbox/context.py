"""What the routes share: state, URL signing and the storage's public address."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watcher.sandbox.envelopes import json_response
from watcher.sandbox.exchange import Exchange, Response
from watcher.sandbox.signing import Signer
from watcher.sandbox.state import V3_DIRECT, Remembered, SandboxState, Settings, Slot
from watcher.sandbox.validation import ApiError

MAX_IDEMPOTENCY_KEY = 255


@dataclass
class Context:
    state: SandboxState
    signer: Signer
    storage_url: str = ""

    @property
    def settings(self) -> Settings:
        return self.state.settings

    def asset_url(self, asset_id: str) -> str:
        return f"{self.storage_url}/asset/{asset_id}"

    def upload_url(self, slot: Slot) -> str:
        path = f"/uploads/{slot.asset_id}"
        query = self.signer.sign("PUT", path, self.settings.url_ttl_seconds, signed_headers(slot))
        return f"{self.storage_url}{path}?{query}"

    def download_url(self, path: str) -> str:
        query = self.signer.sign("GET", path, self.settings.video_url_ttl_seconds, {})
        return f"{self.storage_url}{path}?{query}"


def checksum_header(hex_digest: str) -> str:
    """S3's x-amz-checksum-sha256 value: the digest in base64, not hex."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def signed_headers(slot: Slot) -> dict[str, str]:
    """What a PUT into the slot must carry exactly; direct uploads also bind their size."""
    signed = {"content-type": slot.content_type}
    if slot.protocol == V3_DIRECT:
        signed["content-length"] = str(slot.size_bytes)
        if slot.checksum_sha256:
            signed["x-amz-checksum-sha256"] = checksum_header(slot.checksum_sha256)
    return signed


def json_fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def idempotent(
    ctx: Context,
    exchange: Exchange,
    fingerprint: str,
    perform: Callable[[], tuple[int, dict[str, Any]]],
) -> Response:
    """Run ``perform`` once per Idempotency-Key; replays return the stored response.

    Only for the batch create, the one endpoint whose schema documents the header; everywhere
    else it is ignored (the strictest reading: a replay creates again)."""
    key = exchange.header("Idempotency-Key")
    if key is None:
        return json_response(*perform())
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
            "invalid_request",
            "Idempotency-Key",
        )
    request_fingerprint = f"{exchange.method} {exchange.path} {fingerprint}"
    api_key = exchange.header("X-Api-Key") or ""
    # Held across recall, perform and remember so concurrent retries cannot both perform.
    with ctx.state.lock:
        remembered = ctx.state.recall(api_key, key)
        if remembered is not None:
            if remembered.fingerprint != request_fingerprint:
                raise ApiError(
                    409,
                    "Idempotency-Key was already used with a different request",
                    "conflict",
                    "Idempotency-Key",
                )
            return json_response(
                remembered.status, remembered.payload, {"Idempotent-Replayed": "true"}
            )
        status, payload = perform()
        ctx.state.remember(api_key, key, Remembered(request_fingerprint, status, payload))
    return json_response(status, payload)
