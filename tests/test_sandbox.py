"""The sandbox is as strict as HeyGen and S3, and its faults behave as documented.

Everything goes over real HTTP on 127.0.0.1; raw sockets stand in where requests cannot send
the malformed request under test.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from watcher.sandbox import Fault, Sandbox, SeenRequest

KEY = "test-key"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
MIB = 1 << 20
# What a v3 direct-upload create answers per slot (single and batch alike).
SLOT_FIELDS = (
    "asset_id",
    "upload_url",
    "upload_headers",
    "expires_in_seconds",
    "max_bytes",
    "status",
)


# Plumbing ------------------------------------------------------------------------------------


class Client:
    """requests against one sandbox, with the API key sent only where it belongs."""

    def __init__(self, sandbox: Sandbox, session: requests.Session) -> None:
        self.sb = sandbox
        self.session = session

    def api(
        self, method: str, path: str, *, key: str | None = KEY, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["X-Api-Key"] = key
        return self.session.request(
            method, self.sb.api_url + path, headers=headers, timeout=10, **kwargs
        )

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.api("POST", path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.api("GET", path, **kwargs)

    def put(
        self, url: str, data: Any, content_type: str | None, **headers: str
    ) -> requests.Response:
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.session.put(url, data=data, headers=headers, timeout=10)

    def v1_slot(self, content_type: str = "image/png") -> tuple[str, str]:
        response = self.post("/v1/asset", {"content_type": content_type})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return data["asset_id"], data["url"]

    def v1_asset(self, data: bytes = PNG, content_type: str = "image/png") -> str:
        asset_id, url = self.v1_slot(content_type)
        assert self.put(url, data, content_type).status_code == 200
        return asset_id

    def direct_slot(
        self,
        data: bytes = PNG,
        *,
        checksum: bool = True,
        content_type: str = "image/png",
        filename: str = "a.png",
        **headers: str,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "filename": filename,
            "content_type": content_type,
            "size_bytes": len(data),
        }
        if checksum:
            body["checksum_sha256"] = hashlib.sha256(data).hexdigest()
        response = self.post("/v3/assets/direct-uploads", body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def direct_asset(self, data: bytes = PNG, content_type: str = "image/png") -> str:
        slot = self.direct_slot(data, content_type=content_type)
        assert self.session.put(slot["upload_url"], data=data, headers=slot["upload_headers"]).ok
        completed = self.post(f"/v3/assets/{slot['asset_id']}/complete", {})
        assert completed.status_code == 200, completed.text
        return slot["asset_id"]


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY, video_pending_seconds=0.0, video_processing_seconds=0.0) as sandbox:
        yield sandbox


@pytest.fixture
def client(sb: Sandbox) -> Iterator[Client]:
    with requests.Session() as session:
        yield Client(sb, session)


def s3_code(response: requests.Response) -> str:
    return ET.fromstring(response.content).findtext("Code") or ""


def v3_error(response: requests.Response) -> dict[str, Any]:
    return response.json()["error"]


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def with_query(url: str, **changes: str | None) -> str:
    """The URL with some query parameters replaced (or removed, when None)."""
    split = urlsplit(url)
    params = dict(parse_qsl(split.query))
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return urlunsplit(split._replace(query=urlencode(params)))


def connect(url: str) -> socket.socket:
    split = urlsplit(url)
    return socket.create_connection((split.hostname, split.port), timeout=5)


def request_head(method: str, url: str, *headers: str) -> bytes:
    """A request line and headers exactly as given, ending with the blank line."""
    split = urlsplit(url)
    target = split.path + (f"?{split.query}" if split.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {split.netloc}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are, then read one response."""
    with connect(url) as sock:
        sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def seen(sb: Sandbox, server: str, method: str) -> list[SeenRequest]:
    return [r for r in sb.requests if r.server == server and r.method == method]


AVATAR = {"type": "avatar", "avatar_id": "Daisy-inskirt-20220818"}
TEXT_VOICE = {"type": "text", "input_text": "Hello", "voice_id": "2d5b0e6c"}
V3_AVATAR = {"type": "avatar", "avatar_id": "a", "script": "Hi", "voice_id": "v"}


def v2_body(**item: Any) -> dict[str, Any]:
    return {"video_inputs": [{"character": AVATAR, "voice": TEXT_VOICE, **item}]}


# Authentication, routing, envelopes -----------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong"])
def test_bad_key_is_401_in_each_envelope(client: Client, key: str | None) -> None:
    v1 = client.post("/v1/asset", {"content_type": "image/png"}, key=key)
    assert v1.status_code == 401
    assert v1.json()["data"] is None and isinstance(v1.json()["error"], str)

    v3 = client.post("/v3/assets/direct-uploads", {}, key=key)
    assert v3.status_code == 401 and v3_error(v3)["code"] == "unauthorized"

    old = client.get("/v1/video_status.get?video_id=x", key=key)
    assert old.status_code == 401
    assert old.json()["code"] != 100 and old.json()["data"] is None


def test_api_key_can_change_while_running(client: Client, sb: Sandbox) -> None:
    sb.api_key = "rotated"
    assert client.post("/v1/asset", {"content_type": "image/png"}).status_code == 401
    ok = client.post("/v1/asset", {"content_type": "image/png"}, key="rotated")
    assert ok.status_code == 200


def test_unknown_routes_are_404_in_their_version_envelope(client: Client) -> None:
    v1 = client.get("/v1/nothing")
    assert v1.status_code == 404 and isinstance(v1.json()["error"], str)
    v3 = client.get("/v3/nothing")
    assert v3.status_code == 404 and v3_error(v3)["code"] == "not_found"


def test_wrong_method_is_405(client: Client) -> None:
    assert client.get("/v1/asset").status_code == 405
    response = client.api("DELETE", "/v3/videos/abc")
    assert response.status_code == 405 and v3_error(response)["code"] == "method_not_allowed"


def test_api_and_storage_do_not_answer_each_others_paths(client: Client, sb: Sandbox) -> None:
    asset_id = client.v1_asset()
    assert client.get(f"/asset/{asset_id}").status_code == 404
    on_storage = client.session.post(
        f"{sb.storage_url}/v1/asset", json={"content_type": "image/png"}, timeout=5
    )
    assert on_storage.status_code == 404 and s3_code(on_storage) == "NoSuchKey"


# JSON bodies ----------------------------------------------------------------------------------


def test_body_must_be_sent_as_application_json(client: Client) -> None:
    response = client.api(
        "POST",
        "/v1/asset",
        data='{"content_type": "image/png"}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "raw", [b'["image/png"]', b"{not json", b'{"content_type": NaN}', b"", b"null"]
)
def test_body_must_be_a_json_object(client: Client, raw: bytes) -> None:
    response = client.api(
        "POST", "/v1/asset", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_wrong_field_types_are_400_naming_the_field(client: Client) -> None:
    v1 = client.post("/v1/asset", {"content_type": 5})
    assert v1.status_code == 400 and "content_type" in v1.json()["error"]
    body = {"filename": "a.png", "content_type": "image/png", "size_bytes": "12"}
    v3 = client.post("/v3/assets/direct-uploads", body)
    assert v3.status_code == 400 and v3_error(v3)["param"] == "size_bytes"


def test_unknown_fields_are_tolerated(client: Client) -> None:
    response = client.post("/v1/asset", {"content_type": "image/png", "future_field": [1]})
    assert response.status_code == 200


def test_api_post_needs_content_length(sb: Sandbox) -> None:
    head = request_head(
        "POST", sb.api_url + "/v1/asset", f"X-Api-Key: {KEY}", "Content-Type: application/json"
    )
    status, _ = raw_request(sb.api_url, head)
    assert status == 411


def test_api_post_refuses_chunked_bodies(client: Client) -> None:
    body = iter([b'{"content_type": "image/png"}'])
    response = client.api(
        "POST", "/v1/asset", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 411


# v1 presigned uploads -------------------------------------------------------------------------


def test_v1_slot_put_stores_the_exact_bytes(client: Client, sb: Sandbox) -> None:
    asset_id, url = client.v1_slot()
    other_id, _ = client.v1_slot()
    assert asset_id != other_id
    assert sb.assets == {}, "a slot is not an asset until its bytes are PUT"

    response = client.put(url, PNG, "image/png")

    assert response.status_code == 200 and response.headers["ETag"]
    asset = sb.assets[asset_id]
    assert (asset.size, asset.sha256) == (len(PNG), hashlib.sha256(PNG).hexdigest())
    assert (asset.protocol, asset.put_count, asset.content_type) == ("v1-presigned", 1, "image/png")
    assert asset.path.read_bytes() == PNG
    assert client.session.get(f"{sb.storage_url}/asset/{asset_id}", timeout=5).content == PNG


def test_v1_refuses_unsupported_types(client: Client) -> None:
    response = client.post("/v1/asset", {"content_type": "video/webm"})
    assert response.status_code == 400
    assert response.json() == {"error": "unsupported content_type: video/webm", "data": None}


def test_second_put_replaces_the_bytes_of_the_same_asset(client: Client, sb: Sandbox) -> None:
    asset_id, url = client.v1_slot()
    assert client.put(url, b"first", "image/png").status_code == 200
    assert client.put(url, b"second!", "image/png").status_code == 200
    assert list(sb.assets) == [asset_id]
    asset = sb.assets[asset_id]
    assert asset.put_count == 2 and asset.path.read_bytes() == b"second!"


def test_storage_refuses_and_records_an_api_key(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    response = client.put(url, PNG, "image/png", **{"X-Api-Key": KEY})
    assert response.status_code == 400 and s3_code(response) == "InvalidRequest"
    assert sb.assets == {}
    (put,) = seen(sb, "storage", "PUT")
    assert put.headers["X-Api-Key"] == KEY and put.status == 400


def test_storage_refuses_chunked_puts(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    response = client.put(url, iter([PNG[:100], PNG[100:]]), "image/png")
    assert response.status_code == 501 and s3_code(response) == "NotImplemented"
    assert sb.assets == {}


def test_storage_needs_content_length(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    status, body = raw_request(url, request_head("PUT", url, "Content-Type: image/png"))
    assert status == 411 and b"MissingContentLength" in body


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"X-Amz-Signature": "0" * 64}, "SignatureDoesNotMatch"),
        ({"X-Amz-Expires": "999999"}, "SignatureDoesNotMatch"),
        ({"X-Amz-Date": str(10**13)}, "SignatureDoesNotMatch"),
        ({"X-Amz-Signature": None}, "AccessDenied"),
    ],
)
def test_storage_refuses_a_changed_query(
    client: Client, sb: Sandbox, changes: dict[str, str | None], code: str
) -> None:
    _, url = client.v1_slot()
    response = client.put(with_query(url, **changes), PNG, "image/png")
    assert response.status_code == 403 and s3_code(response) == code
    assert sb.assets == {}


def test_expired_url_is_refused_and_a_fresh_slot_works(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    sb.expire_slots()
    expired = client.put(url, PNG, "image/png")
    assert expired.status_code == 403 and s3_code(expired) == "AccessDenied"
    assert "Request has expired" in expired.text
    _, fresh = client.v1_slot()
    assert client.put(fresh, PNG, "image/png").status_code == 200


def test_put_content_type_must_match_the_signed_one(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot("image/png")
    for content_type in ("image/jpeg", None):
        response = client.put(url, PNG, content_type)
        assert response.status_code == 403 and s3_code(response) == "SignatureDoesNotMatch"
    assert sb.assets == {}


def test_v1_put_over_the_type_limit_is_refused_from_its_headers(client: Client) -> None:
    _, url = client.v1_slot("image/png")
    head = request_head("PUT", url, "Content-Type: image/png", f"Content-Length: {50 * MIB + 1}")
    status, body = raw_request(url, head)
    assert status == 400 and b"EntityTooLarge" in body


def test_short_body_stores_nothing(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    head = request_head("PUT", url, "Content-Type: image/png", "Content-Length: 1000")
    with connect(url) as sock:
        sock.sendall(head + PNG[:10])
        sock.shutdown(socket.SHUT_WR)
        wait_until(lambda: [r for r in seen(sb, "storage", "PUT") if r.status])
    assert sb.assets == {}
    assert list((sb.data_dir / "incoming").iterdir()) == []


def test_expect_continue_is_answered_only_once_the_headers_pass(
    client: Client, sb: Sandbox
) -> None:
    asset_id, url = client.v1_slot()
    length, expect = f"Content-Length: {len(PNG)}", "Expect: 100-continue"
    refused, body = raw_request(
        url, request_head("PUT", url, "Content-Type: image/jpeg", length, expect)
    )
    assert refused == 403 and b"SignatureDoesNotMatch" in body

    with connect(url) as sock:
        sock.sendall(request_head("PUT", url, "Content-Type: image/png", length, expect))
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(PNG)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200
    assert sb.assets[asset_id].size == len(PNG)


def test_a_declared_checksum_is_verified_even_when_unsigned(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    response = client.put(url, PNG, "image/png", **{"x-amz-checksum-sha256": wrong})
    assert response.status_code == 400 and s3_code(response) == "BadDigest"
    assert sb.assets == {}


def test_large_put_is_stored_byte_exact_and_hashed(
    client: Client, sb: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "big.mp4"
    source.write_bytes(os.urandom(MIB) * 50 + b"tail")
    asset_id, url = client.v1_slot("video/mp4")
    with open(source, "rb") as body:
        assert client.put(url, body, "video/mp4").status_code == 200
    asset = sb.assets[asset_id]
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (asset.size, asset.sha256) == (source.stat().st_size, expected)
    assert hashlib.sha256(asset.path.read_bytes()).hexdigest() == expected


# v3 direct uploads ----------------------------------------------------------------------------


def test_direct_upload_create_put_complete(client: Client, sb: Sandbox) -> None:
    slot = client.direct_slot(PNG, filename="logo.png")
    digest = base64.b64encode(hashlib.sha256(PNG).digest()).decode()
    assert slot["upload_headers"] == {"Content-Type": "image/png", "x-amz-checksum-sha256": digest}
    assert slot["status"] == "pending_upload" and slot["expires_in_seconds"] == 900
    assert slot["max_bytes"] == 50 * MIB

    assert client.session.put(slot["upload_url"], data=PNG, headers=slot["upload_headers"]).ok
    first = client.post(f"/v3/assets/{slot['asset_id']}/complete", {})
    again = client.post(
        f"/v3/assets/{slot['asset_id']}/complete",
        {"checksum_sha256": hashlib.sha256(PNG).hexdigest()},
    )

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["data"] == {
        "asset_id": slot["asset_id"],
        "url": f"{sb.storage_url}/asset/{slot['asset_id']}",
        "mime_type": "image/png",
        "size_bytes": len(PNG),
        "status": "completed",
    }
    asset = sb.assets[slot["asset_id"]]
    assert (asset.protocol, asset.filename) == ("v3-direct", "logo.png")


def test_direct_upload_without_checksum_signs_only_the_type(client: Client) -> None:
    slot = client.direct_slot(PNG, checksum=False)
    assert slot["upload_headers"] == {"Content-Type": "image/png"}
    assert client.put(slot["upload_url"], PNG, "image/png").status_code == 200


def test_direct_put_length_must_equal_the_signed_size(client: Client, sb: Sandbox) -> None:
    slot = client.direct_slot(PNG, checksum=False)
    response = client.put(slot["upload_url"], PNG + b"x", "image/png")
    assert response.status_code == 403 and s3_code(response) == "SignatureDoesNotMatch"
    assert sb.assets == {}


def test_direct_put_needs_the_signed_checksum_header(client: Client, sb: Sandbox) -> None:
    slot = client.direct_slot(PNG)
    other = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    for headers in (
        {"Content-Type": "image/png"},
        {**slot["upload_headers"], "x-amz-checksum-sha256": other},
    ):
        response = client.session.put(slot["upload_url"], data=PNG, headers=headers, timeout=5)
        assert response.status_code == 403 and s3_code(response) == "SignatureDoesNotMatch"
    assert sb.assets == {}


def test_direct_put_with_other_bytes_is_a_bad_digest(client: Client, sb: Sandbox) -> None:
    slot = client.direct_slot(PNG)
    tampered = bytes([PNG[0] ^ 1]) + PNG[1:]
    response = client.session.put(slot["upload_url"], data=tampered, headers=slot["upload_headers"])
    assert response.status_code == 400 and s3_code(response) == "BadDigest"
    assert sb.assets == {}


def test_complete_refusals(client: Client) -> None:
    slot = client.direct_slot(PNG, checksum=False)
    early = client.post(f"/v3/assets/{slot['asset_id']}/complete", {})
    assert early.status_code == 409 and v3_error(early)["code"] == "conflict"

    assert client.put(slot["upload_url"], PNG, "image/png").status_code == 200
    mismatch = client.post(f"/v3/assets/{slot['asset_id']}/complete", {"checksum_sha256": "0" * 64})
    # No code is documented for a checksum mismatch: the generic one for a 400.
    assert mismatch.status_code == 400 and v3_error(mismatch)["code"] == "invalid_request"
    assert v3_error(mismatch)["param"] == "checksum_sha256"

    unknown = client.post("/v3/assets/nope/complete", {})
    assert unknown.status_code == 404 and v3_error(unknown)["code"] == "not_found"


@pytest.mark.parametrize(
    ("change", "status", "param", "code"),
    [
        ({"filename": ""}, 400, "filename", "invalid_request"),
        ({"filename": None}, 400, "filename", "invalid_request"),
        ({"size_bytes": 0}, 400, "size_bytes", "invalid_request"),
        ({"size_bytes": True}, 400, "size_bytes", "invalid_request"),
        ({"checksum_sha256": "ABC"}, 400, "checksum_sha256", "invalid_request"),
        ({"checksum_sha256": "A" * 64}, 400, "checksum_sha256", "invalid_request"),
        ({"content_type": "text/plain"}, 400, "content_type", "invalid_request"),
        ({"size_bytes": 50 * MIB + 1}, 413, "size_bytes", "payload_too_large"),
        (
            {"content_type": "video/mp4", "size_bytes": 5 * (1 << 30) + 1},
            413,
            "size_bytes",
            "payload_too_large",
        ),
    ],
)
def test_direct_upload_validation(
    client: Client, change: dict[str, Any], status: int, param: str, code: str
) -> None:
    body = {"filename": "a.png", "content_type": "image/png", "size_bytes": 10, **change}
    response = client.post("/v3/assets/direct-uploads", body)
    assert response.status_code == status
    assert (v3_error(response)["param"], v3_error(response)["code"]) == (param, code)


@pytest.mark.parametrize(
    ("content_type", "filename"),
    [("video/webm", "a.webm"), ("application/pdf", "a.pdf"), ("application/x-subrip", "a.srt")],
)
def test_v3_accepts_its_extra_types(client: Client, content_type: str, filename: str) -> None:
    slot = client.direct_slot(b"data", content_type=content_type, filename=filename)
    assert slot["upload_headers"]["Content-Type"] == content_type


# Idempotency ----------------------------------------------------------------------------------


def batch_create(client: Client, idem: str, count: int = 1, **kwargs: Any) -> requests.Response:
    body = {"files": batch_files(count)}
    return client.post(
        "/v3/assets/direct-uploads/batches", body, headers={"Idempotency-Key": idem}, **kwargs
    )


def test_same_key_same_body_replays_the_batch_create(client: Client) -> None:
    first = batch_create(client, "k1").json()["data"]
    second = batch_create(client, "k1").json()["data"]
    third = batch_create(client, "k2").json()["data"]
    assert first == second
    assert third["batch_id"] != first["batch_id"]


def test_same_key_other_body_is_409(client: Client) -> None:
    batch_create(client, "k1")
    response = batch_create(client, "k1", count=2)
    assert response.status_code == 409
    assert v3_error(response)["code"] == "conflict"


def test_idempotency_keys_belong_to_one_api_key(client: Client, sb: Sandbox) -> None:
    batch_create(client, "k1")
    sb.api_key = "other"
    assert batch_create(client, "k1", key="other").status_code == 201


def test_idempotency_key_is_ignored_where_it_is_undocumented(client: Client, sb: Sandbox) -> None:
    # The strictest reading: a replay with the same key creates again.
    first = client.direct_slot(PNG, **{"Idempotency-Key": "k1"})
    second = client.direct_slot(PNG, **{"Idempotency-Key": "k1"})
    assert first["asset_id"] != second["asset_id"]
    for _ in range(2):
        response = client.api(
            "POST",
            "/v3/assets",
            files={"file": ("pic.png", PNG, "image/png")},
            headers={"Idempotency-Key": "k2"},
        )
        assert response.status_code == 201
    assert len(sb.assets) == 2
    for _ in range(2):
        created = client.post("/v3/videos", V3_AVATAR, headers={"Idempotency-Key": "k3"})
        assert created.status_code == 201
    assert len(sb.videos) == 2


# v3 batches -----------------------------------------------------------------------------------


def batch_files(count: int) -> list[dict[str, Any]]:
    return [
        {"filename": f"f{i}.png", "content_type": "image/png", "size_bytes": len(PNG)}
        for i in range(count)
    ]


def test_batch_lifecycle(client: Client, sb: Sandbox) -> None:
    created = client.post(
        "/v3/assets/direct-uploads/batches", {"files": batch_files(3), "title": "t"}
    )
    assert created.status_code == 201
    batch_id, items = created.json()["data"]["batch_id"], created.json()["data"]["items"]
    assert [set(item) for item in items] == [set(SLOT_FIELDS)] * 3
    for item in items[:2]:
        assert client.session.put(item["upload_url"], data=PNG, headers=item["upload_headers"]).ok

    before = client.get(f"/v3/assets/batches/{batch_id}").json()["data"]
    assert before["status"] == "processing"
    assert before["items"] == [
        {"item_index": i, "status": "queued", "video_id": None} for i in range(3)
    ]

    sb.batch_processing_seconds = 60
    first = client.post("/v3/assets/complete/batches", {"batch_id": batch_id})
    again = client.post("/v3/assets/complete/batches", {"batch_id": batch_id})
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() == {"data": {"batch_id": batch_id, "status": "processing"}}
    processing = client.get(f"/v3/assets/batches/{batch_id}").json()["data"]
    assert processing["status"] == "processing"
    assert [i["status"] for i in processing["items"]] == ["processing", "processing", "failed"]
    assert [i["video_id"] for i in processing["items"]] == [
        items[0]["asset_id"],
        items[1]["asset_id"],
        None,
    ]

    sb.batch_processing_seconds = 0
    done = client.get(f"/v3/assets/batches/{batch_id}").json()["data"]
    assert done["status"] == "completed"
    assert done["total_items"] == 3
    assert done["counts_by_status"] == {"queued": 0, "processing": 0, "completed": 2, "failed": 1}
    assert [i["status"] for i in done["items"]] == ["completed", "completed", "failed"]
    assert done["items"][2]["error"]["code"] == "asset_not_available"
    assert (done["has_more"], done["next_token"]) == (False, None)
    assert set(done) == {
        "batch_id",
        "status",
        "total_items",
        "counts_by_status",
        "created_at",
        "items",
        "has_more",
        "next_token",
    }


def test_batch_reads_are_paginated_with_a_small_default_page(client: Client, sb: Sandbox) -> None:
    created = client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(25)})
    batch_id = created.json()["data"]["batch_id"]
    first = client.get(f"/v3/assets/batches/{batch_id}").json()["data"]
    assert len(first["items"]) < 25 and first["has_more"] is True
    seen = [item["item_index"] for item in first["items"]]
    token = first["next_token"]
    while token:
        page = client.get(f"/v3/assets/batches/{batch_id}?token={token}").json()["data"]
        seen += [item["item_index"] for item in page["items"]]
        token = page["next_token"] if page["has_more"] else None
    assert seen == list(range(25))
    whole = client.get(f"/v3/assets/batches/{batch_id}?limit=100").json()["data"]
    assert len(whole["items"]) == 25 and whole["has_more"] is False


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=5&limit=6", "limit"),
        ("token=made-up", "token"),
        ("page=2", "page"),
    ],
)
def test_batch_read_refuses_bad_paging(client: Client, query: str, param: str) -> None:
    batch_id = client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(2)}).json()[
        "data"
    ]["batch_id"]
    response = client.get(f"/v3/assets/batches/{batch_id}?{query}")
    assert response.status_code == 400 and v3_error(response)["param"] == param


def test_a_token_belongs_to_its_own_batch(client: Client, sb: Sandbox) -> None:
    sb.batch_page_size = 1
    first, second = (
        client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(2)}).json()["data"][
            "batch_id"
        ]
        for _ in range(2)
    )
    token = client.get(f"/v3/assets/batches/{first}").json()["data"]["next_token"]
    response = client.get(f"/v3/assets/batches/{second}?token={token}")
    assert response.status_code == 400 and v3_error(response)["param"] == "token"


def test_a_failed_ingestion_names_its_reason(client: Client, sb: Sandbox) -> None:
    sb.fail_ingestion("f1.png", "invalid_media", "the image cannot be decoded")
    data = client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(2)}).json()[
        "data"
    ]
    for item in data["items"]:
        assert client.session.put(item["upload_url"], data=PNG, headers=item["upload_headers"]).ok
    client.post("/v3/assets/complete/batches", {"batch_id": data["batch_id"]})
    items = client.get(f"/v3/assets/batches/{data['batch_id']}").json()["data"]["items"]
    assert items[0]["status"] == "completed" and "error" not in items[0]
    assert items[1]["status"] == "failed"
    assert items[1]["error"] == {"code": "invalid_media", "message": "the image cannot be decoded"}


def test_statuses_share_the_read_model(client: Client, sb: Sandbox) -> None:
    data = client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(2)}).json()[
        "data"
    ]
    for item in data["items"]:
        assert client.session.put(item["upload_url"], data=PNG, headers=item["upload_headers"]).ok
    client.post("/v3/assets/complete/batches", {"batch_id": data["batch_id"]})
    asset = data["items"][0]["asset_id"]
    answer = client.get(
        f"/v3/assets/statuses?asset_ids={asset},nope&batch_ids={data['batch_id']}"
    ).json()["data"]
    assert [(i["status"], i["video_id"]) for i in answer["items"]] == [
        ("completed", asset),
        ("not_found", "nope"),
        ("completed", asset),
        ("completed", data["items"][1]["asset_id"]),
    ]
    assert answer["has_more"] is False
    too_many = ",".join(f"a{i}" for i in range(101))
    response = client.get(f"/v3/assets/statuses?asset_ids={too_many}")
    assert response.status_code == 400 and v3_error(response)["param"] == "asset_ids"


def test_batch_of_uploaded_files_completes(client: Client) -> None:
    created = client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(2)})
    data = created.json()["data"]
    for item in data["items"]:
        assert client.session.put(item["upload_url"], data=PNG, headers=item["upload_headers"]).ok
    client.post("/v3/assets/complete/batches", {"batch_id": data["batch_id"]})
    status = client.get(f"/v3/assets/batches/{data['batch_id']}").json()["data"]["status"]
    assert status == "completed"


@pytest.mark.parametrize("count", [0, 101])
def test_batch_size_limits(client: Client, count: int) -> None:
    response = client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(count)})
    assert response.status_code == 400 and v3_error(response)["param"] == "files"


def test_batch_of_one_hundred_is_accepted(client: Client) -> None:
    response = client.post("/v3/assets/direct-uploads/batches", {"files": batch_files(100)})
    assert response.status_code == 201 and len(response.json()["data"]["items"]) == 100


def test_batch_bad_item_names_its_index(client: Client) -> None:
    files = batch_files(3)
    files[1]["content_type"] = "image/gif"
    response = client.post("/v3/assets/direct-uploads/batches", {"files": files})
    assert response.status_code == 400
    assert v3_error(response)["param"] == "files[1].content_type"


def test_unknown_batch_is_404(client: Client) -> None:
    assert client.get("/v3/assets/batches/nope").status_code == 404
    response = client.post("/v3/assets/complete/batches", {"batch_id": "nope"})
    assert response.status_code == 404 and v3_error(response)["param"] == "batch_id"


# v3 multipart ---------------------------------------------------------------------------------


def test_multipart_upload_stores_the_file(client: Client, sb: Sandbox) -> None:
    response = client.api("POST", "/v3/assets", files={"file": ("pic.png", PNG, "image/png")})
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["url"] == f"{sb.storage_url}/asset/{data['asset_id']}"
    assert (data["mime_type"], data["size_bytes"]) == ("image/png", len(PNG))
    asset = sb.assets[data["asset_id"]]
    assert (asset.protocol, asset.filename, asset.path.read_bytes()) == (
        "v3-multipart",
        "pic.png",
        PNG,
    )


def test_multipart_over_32_mib_is_refused_before_the_body(sb: Sandbox) -> None:
    head = request_head(
        "POST",
        sb.api_url + "/v3/assets",
        f"X-Api-Key: {KEY}",
        "Content-Type: multipart/form-data; boundary=xyz",
        f"Content-Length: {32 * MIB + 1}",
    )
    status, body = raw_request(sb.api_url, head)  # the body is never sent
    assert status == 413 and b"payload_too_large" in body


@pytest.mark.parametrize(
    ("framing", "body"),
    [((), b""), (("Transfer-Encoding: chunked",), b"4\r\nabcd\r\n0\r\n\r\n")],
)
def test_multipart_needs_content_length(sb: Sandbox, framing: tuple[str, ...], body: bytes) -> None:
    head = request_head(
        "POST",
        sb.api_url + "/v3/assets",
        f"X-Api-Key: {KEY}",
        "Content-Type: multipart/form-data; boundary=xyz",
        *framing,
    )
    status, _ = raw_request(sb.api_url, head, body)
    assert status == 411


def test_multipart_needs_a_file_part(client: Client) -> None:
    response = client.api("POST", "/v3/assets", files={"upload": ("a.png", PNG, "image/png")})
    assert response.status_code == 400 and v3_error(response)["param"] == "file"


def test_multipart_file_type_must_be_supported(client: Client) -> None:
    response = client.api("POST", "/v3/assets", files={"file": ("a.txt", b"hi", "text/plain")})
    assert response.status_code == 400
    assert v3_error(response)["param"] == "file" and "text/plain" in v3_error(response)["message"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\n--x--"),
        ("multipart/form-data; boundary=other", b"--x\r\nContent-Disposition: form-data"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + PNG,
        ),
        ("application/json", b"{}"),
    ],
)
def test_multipart_is_parsed_strictly(client: Client, content_type: str, body: bytes) -> None:
    response = client.api("POST", "/v3/assets", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 400


# The upload host (one-request upload) ---------------------------------------------------------


def host_upload(
    sb: Sandbox, data: bytes, content_type: str | None = "image/png", key: str | None = KEY
) -> requests.Response:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if key is not None:
        headers["X-API-KEY"] = key
    return requests.post(f"{sb.upload_url}/v1/asset", data=data, headers=headers, timeout=10)


def test_upload_host_stores_the_raw_body(sb: Sandbox) -> None:
    response = host_upload(sb, PNG)
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 100 and set(body["data"]) == {"id", "url"}
    asset = sb.assets[body["data"]["id"]]
    assert (asset.protocol, asset.content_type, asset.path.read_bytes()) == (
        "v1-upload",
        "image/png",
        PNG,
    )
    assert body["data"]["url"] == f"{sb.storage_url}/asset/{asset.asset_id}"
    (seen_request,) = seen(sb, "upload", "POST")
    assert seen_request.headers["X-API-KEY"] == KEY


@pytest.mark.parametrize(
    ("content_type", "key", "status"),
    [
        ("image/png", None, 401),
        ("image/png", "wrong", 401),
        ("audio/wav", KEY, 400),  # not in the reference's list for this upload
        ("application/json", KEY, 400),
        (None, KEY, 400),
    ],
)
def test_upload_host_refusals(sb: Sandbox, content_type: str | None, key: str | None, status: int):
    response = host_upload(sb, PNG, content_type, key)
    assert response.status_code == status
    assert response.json()["code"] != 100 and response.json()["message"]
    assert sb.assets == {}


@pytest.mark.parametrize(
    ("framing", "body", "status"),
    [((), b"", 411), (("Transfer-Encoding: chunked",), b"4\r\nabcd\r\n0\r\n\r\n", 411)],
)
def test_upload_host_needs_content_length(
    sb: Sandbox, framing: tuple[str, ...], body: bytes, status: int
) -> None:
    head = request_head(
        "POST",
        sb.upload_url + "/v1/asset",
        f"X-API-KEY: {KEY}",
        "Content-Type: image/png",
        *framing,
    )
    assert raw_request(sb.upload_url, head, body)[0] == status
    assert sb.assets == {}


def test_upload_host_serves_only_its_route(sb: Sandbox) -> None:
    assert (
        requests.post(
            f"{sb.upload_url}/v3/assets", headers={"X-API-KEY": KEY}, timeout=5
        ).status_code
        == 404
    )
    assert (
        requests.get(f"{sb.upload_url}/v1/asset", headers={"X-API-KEY": KEY}, timeout=5).status_code
        == 405
    )
    assert host_upload(sb, b"").status_code == 400


# Video generation -----------------------------------------------------------------------------


def test_v2_video_goes_pending_processing_completed(client: Client, sb: Sandbox) -> None:
    sb.video_pending_seconds = sb.video_processing_seconds = 60
    response = client.post("/v2/video/generate", v2_body())
    assert response.status_code == 200 and response.json()["error"] is None
    video_id = response.json()["data"]["video_id"]

    def status() -> dict[str, Any]:
        return client.get(f"/v2/videos/{video_id}").json()["data"]

    assert status()["status"] == "pending"
    sb.video_pending_seconds = 0
    assert status()["status"] == "processing" and "video_url" not in status()
    sb.video_processing_seconds = 0
    done = status()
    assert (done["id"], done["status"]) == (video_id, "completed")
    assert isinstance(done["duration"], float)
    video = client.session.get(done["video_url"], timeout=5)
    assert video.headers["Content-Type"] == "video/mp4"
    assert video.content[4:12] == b"ftypisom" and b"mdat" in video.content
    thumbnail = client.session.get(done["thumbnail_url"], timeout=5)
    assert thumbnail.content.startswith(b"\x89PNG")
    assert sb.videos[video_id].body == v2_body()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"video_inputs": []}, "video_inputs"),
        ({"video_inputs": "x"}, "video_inputs"),
        ({}, "video_inputs"),
        (v2_body(character=None), "video_inputs[0].character"),
        (v2_body(character={"type": "robot"}), "video_inputs[0].character.type"),
        (v2_body(character={"type": "avatar"}), "video_inputs[0].character.avatar_id"),
        (
            v2_body(character={"type": "talking_photo"}),
            "video_inputs[0].character.talking_photo_id",
        ),
        (v2_body(voice={**TEXT_VOICE, "input_text": ""}), "video_inputs[0].voice.input_text"),
        (v2_body(voice={"type": "text", "input_text": "x"}), "video_inputs[0].voice.voice_id"),
        (v2_body(voice={"type": "audio"}), "video_inputs[0].voice.audio_url"),
        (v2_body(background={"type": "color"}), "video_inputs[0].background.value"),
        (v2_body(background={"type": "image"}), "video_inputs[0].background.url"),
        (
            v2_body(background={"type": "image", "url": "not a url"}),
            "video_inputs[0].background.url",
        ),
        ({**v2_body(), "dimension": {"width": "1280", "height": 720}}, "dimension.width"),
        ({**v2_body(), "dimension": {"width": 1280}}, "dimension.height"),
    ],
)
def test_v2_generate_validation(client: Client, body: dict[str, Any], field: str) -> None:
    response = client.post("/v2/video/generate", body)
    assert response.status_code == 400
    assert response.json()["data"] is None and field in response.json()["error"]


def test_v2_accepts_every_documented_shape(client: Client) -> None:
    audio_id = client.v1_asset(b"ID3audio", "audio/mpeg")
    image_id = client.v1_asset()
    body = {
        "video_inputs": [
            {
                "character": {"type": "talking_photo", "talking_photo_id": "tp"},
                "voice": {"type": "audio", "audio_asset_id": audio_id},
                "background": {"type": "image", "image_asset_id": image_id},
            },
            {
                "character": {**AVATAR, "avatar_style": "normal"},
                "voice": {
                    "type": "audio",
                    "audio_url": f"https://files.heygen.ai/asset/{audio_id}",
                },
                "background": {"type": "color", "value": "#FFFFFF"},
            },
        ],
        "dimension": {"width": 1280, "height": 720},
        "title": "t",
        "callback_id": "c",
    }
    assert client.post("/v2/video/generate", body).status_code == 200


def test_video_asset_references_must_exist(client: Client, sb: Sandbox) -> None:
    audio_id = client.v1_asset(b"ID3audio", "audio/mpeg")
    image_id = client.v1_asset()
    cases = [
        ({"type": "audio", "audio_url": "https://files.heygen.ai/asset/missing"}, "missing"),
        ({"type": "audio", "audio_url": f"{sb.storage_url}/asset/missing"}, "missing"),
        ({"type": "audio", "audio_asset_id": "gone"}, "gone"),
    ]
    for voice, asset_id in cases:
        response = client.post("/v2/video/generate", v2_body(voice=voice))
        assert response.status_code == 400
        assert response.json()["error"] == f"asset not found: {asset_id}"
    wrong_kind = client.post(
        "/v2/video/generate", v2_body(voice={"type": "audio", "audio_asset_id": image_id})
    )
    assert wrong_kind.status_code == 400
    for url in (f"{sb.storage_url}/asset/{audio_id}", "https://example.com/asset/anything"):
        ok = client.post("/v2/video/generate", v2_body(voice={"type": "audio", "audio_url": url}))
        assert ok.status_code == 200, ok.text


def test_direct_uploads_are_usable_only_once_completed(client: Client) -> None:
    slot = client.direct_slot(PNG)
    assert client.session.put(slot["upload_url"], data=PNG, headers=slot["upload_headers"]).ok
    background = {"type": "image", "image_asset_id": slot["asset_id"]}
    before = client.post("/v2/video/generate", v2_body(background=background))
    assert before.status_code == 400
    client.post(f"/v3/assets/{slot['asset_id']}/complete", {})
    after = client.post("/v2/video/generate", v2_body(background=background))
    assert after.status_code == 200


def test_template_generate(client: Client, sb: Sandbox) -> None:
    image_id = client.v1_asset()
    variables = {
        "headline": {"name": "headline", "type": "text", "properties": {"content": "Hi"}},
        "logo": {
            "name": "logo",
            "type": "image",
            "properties": {"asset_id": image_id, "fit": "contain"},
        },
    }
    response = client.post("/v2/template/tpl1/generate", {"variables": variables, "test": True})
    assert response.status_code == 200
    video_id = response.json()["data"]["video_id"]
    assert sb.videos[video_id].endpoint == "/v2/template/tpl1/generate"


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ({"name": "other", "type": "text", "properties": {"content": "x"}}, "variables.v.name"),
        ({"name": "v", "type": "sticker", "properties": {}}, "variables.v.type"),
        (
            {"name": "v", "type": "image", "properties": {"fit": "cover"}},
            "variables.v.properties.url",
        ),
        ({"name": "v", "type": "text"}, "variables.v.properties"),
        (
            {"name": "v", "type": "video", "properties": {"asset_id": "nope"}},
            "asset not found: nope",
        ),
    ],
)
def test_template_validation(client: Client, variable: dict[str, Any], message: str) -> None:
    response = client.post("/v2/template/tpl1/generate", {"variables": {"v": variable}})
    assert response.status_code == 400 and message in response.json()["error"]


def test_v3_videos(client: Client, sb: Sandbox) -> None:
    sb.video_pending_seconds = 60
    response = client.post("/v3/videos", V3_AVATAR)
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["status"] == "waiting" and data["output_format"] == "mp4"
    status = client.get(f"/v3/videos/{data['video_id']}").json()["data"]
    assert (status["id"], status["status"]) == (data["video_id"], "waiting")
    assert "video_id" not in status  # the v3 resource names its id `id`
    sb.video_pending_seconds = 0
    status = client.get(f"/v3/videos/{data['video_id']}").json()["data"]
    assert status["status"] == "completed" and status["video_url"]
    assert status["failure_code"] is None and status["captioned_video_url"] is None

    audio_id = client.direct_asset(b"ID3audio", "audio/mpeg")
    image_id = client.direct_asset()
    with_audio = {
        "type": "image",
        "image": {"type": "asset_id", "asset_id": image_id},
        "audio_asset_id": audio_id,
        "background": {"type": "color", "value": "#000000"},
        "aspect_ratio": "9:16",
    }
    assert client.post("/v3/videos", with_audio).status_code == 201, with_audio
    by_url = {
        "type": "image",
        "image": {"type": "url", "url": f"https://files.heygen.ai/asset/{image_id}"},
        "script": "Hi",
        "voice_id": "v",
    }
    assert client.post("/v3/videos", by_url).status_code == 201


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        # The flat shape an earlier contract gave: `type` is required.
        ({"avatar_id": "a", "script": "Hi", "voice_id": "v"}, "type", "invalid_request"),
        ({"image_asset_id": "x", "script": "Hi", "voice_id": "v"}, "type", "invalid_request"),
        ({**V3_AVATAR, "type": "robot"}, "type", "invalid_request"),
        ({"type": "avatar", "script": "Hi", "voice_id": "v"}, "avatar_id", "invalid_request"),
        ({"type": "image", "script": "Hi", "voice_id": "v"}, "image", "invalid_request"),
        (
            {"type": "image", "image": {"type": "asset_id"}, "script": "Hi", "voice_id": "v"},
            "image.asset_id",
            "invalid_request",
        ),
        ({"type": "avatar", "avatar_id": "a", "voice_id": "v"}, "script", "invalid_request"),
        ({"type": "avatar", "avatar_id": "a", "script": "Hi"}, "voice_id", "invalid_request"),
        (
            {**V3_AVATAR, "audio_url": "https://example.com/a.mp3"},
            "script",
            "invalid_request",
        ),
        ({**V3_AVATAR, "aspect_ratio": "2:1"}, "aspect_ratio", "invalid_request"),
        (
            {
                "type": "image",
                "image": {"type": "asset_id", "asset_id": "nope"},
                **{"script": "Hi", "voice_id": "v"},
            },
            "image.asset_id",
            "asset_not_available",
        ),
        (
            {"type": "avatar", "avatar_id": "a", "audio_asset_id": "nope"},
            "audio_asset_id",
            "asset_not_available",
        ),
    ],
)
def test_v3_videos_validation(client: Client, body: dict[str, Any], param: str, code: str) -> None:
    response = client.post("/v3/videos", body)
    assert response.status_code == 400
    assert (v3_error(response)["param"], v3_error(response)["code"]) == (param, code)


def test_v3_template_answers_the_video_resource(client: Client, sb: Sandbox) -> None:
    sb.video_pending_seconds = 60
    image_id = client.v1_asset()
    variables = {
        "logo": {"name": "logo", "type": "image", "properties": {"asset_id": image_id}},
    }
    response = client.post("/v3/templates/tpl9", {"variables": variables})
    assert response.status_code == 201
    data = response.json()["data"]
    assert "video_id" not in data and data["status"] == "waiting"
    assert sb.videos[data["id"]].endpoint == "/v3/templates/tpl9"
    refused = client.post("/v3/templates/tpl9", {"title": "no variables"})
    assert refused.status_code == 400 and v3_error(refused)["param"] == "variables"


def test_a_completed_asset_processes_for_a_while(client: Client, sb: Sandbox) -> None:
    sb.asset_processing_seconds = 60
    slot = client.direct_slot(PNG)
    assert client.session.put(slot["upload_url"], data=PNG, headers=slot["upload_headers"]).ok
    path = f"/v3/assets/{slot['asset_id']}/complete"
    assert client.post(path, {}).json()["data"]["status"] == "processing"
    video = {"type": "image", "image": {"type": "asset_id", "asset_id": slot["asset_id"]}}
    refused = client.post("/v3/videos", {**video, "script": "Hi", "voice_id": "v"})
    assert refused.status_code == 400
    assert v3_error(refused)["code"] == "asset_not_available"
    assert "processing" in v3_error(refused)["message"]
    sb.asset_processing_seconds = 0
    assert client.post(path, {}).json()["data"]["status"] == "completed"
    assert client.post("/v3/videos", {**video, "script": "Hi", "voice_id": "v"}).status_code == 201


def test_v1_status_gives_a_failure_reason_as_an_object(client: Client, sb: Sandbox) -> None:
    sb.queue_video_outcome("failed", failure_code="E1", failure_message="no voice")
    video_id = client.post("/v2/video/generate", v2_body()).json()["data"]["video_id"]
    data = client.get(f"/v1/video_status.get?video_id={video_id}").json()["data"]
    assert data["status"] == "failed"
    assert data["error"] == {"code": "E1", "message": "no voice"}


def test_only_documented_or_generic_v3_codes(client: Client) -> None:
    from watcher.sandbox.envelopes import DOCUMENTED_V3_CODES, GENERIC_V3_CODES, api_error_payload

    assert set(DOCUMENTED_V3_CODES) == {
        "insufficient_credit",
        "rate_limit_exceeded",
        "payload_too_large",
        "asset_not_available",
    }
    assert "checksum_mismatch" not in GENERIC_V3_CODES.values()
    with pytest.raises(ValueError, match="undocumented"):
        api_error_payload("v3", 400, "x", "checksum_mismatch")


def test_status_endpoints(client: Client) -> None:
    video_id = client.post("/v2/video/generate", v2_body()).json()["data"]["video_id"]
    old = client.get(f"/v1/video_status.get?video_id={video_id}").json()
    assert old["code"] == 100 and old["message"] == "success"
    assert old["data"]["status"] == "completed" and old["data"]["video_url"]

    v2 = client.get("/v2/videos/unknown")
    assert v2.status_code == 404 and v2.json()["data"] is None
    v3 = client.get("/v3/videos/unknown")
    assert v3.status_code == 404 and v3_error(v3)["code"] == "not_found"
    v1 = client.get("/v1/video_status.get?video_id=unknown")
    assert v1.status_code == 404 and v1.json()["code"] != 100
    assert client.get("/v1/video_status.get").status_code == 400


def test_queued_outcomes(client: Client, sb: Sandbox) -> None:
    sb.queue_video_outcome("failed", failure_code="AVATAR_ERROR", failure_message="bad avatar")
    sb.queue_video_outcome("stuck")
    failed_id = client.post("/v2/video/generate", v2_body()).json()["data"]["video_id"]
    stuck_id = client.post("/v2/video/generate", v2_body()).json()["data"]["video_id"]
    normal_id = client.post("/v2/video/generate", v2_body()).json()["data"]["video_id"]

    failed = client.get(f"/v2/videos/{failed_id}").json()["data"]
    assert (failed["status"], failed["failure_code"], failed["failure_message"]) == (
        "failed",
        "AVATAR_ERROR",
        "bad avatar",
    )
    assert "video_url" not in failed
    assert client.get(f"/v2/videos/{normal_id}").json()["data"]["status"] == "completed"
    assert client.get(f"/v2/videos/{stuck_id}").json()["data"]["status"] == "processing"
    assert sb.videos[stuck_id].outcome == "stuck"


def test_video_url_expires_and_is_signed(client: Client, sb: Sandbox) -> None:
    video_id = client.post("/v2/video/generate", v2_body()).json()["data"]["video_id"]
    url = client.get(f"/v2/videos/{video_id}").json()["data"]["video_url"]
    tampered = client.session.get(with_query(url, **{"X-Amz-Signature": "f" * 64}), timeout=5)
    assert tampered.status_code == 403 and s3_code(tampered) == "SignatureDoesNotMatch"
    assert client.session.get(url.replace(video_id, "other"), timeout=5).status_code == 403

    sb.expire_slots()
    assert client.session.get(url, timeout=5).status_code == 403
    fresh = client.get(f"/v2/videos/{video_id}").json()["data"]["video_url"]
    assert client.session.get(fresh, timeout=5).status_code == 200


def test_video_url_lives_for_video_url_ttl_seconds(client: Client, sb: Sandbox) -> None:
    sb.video_url_ttl_seconds = 0.2
    video_id = client.post("/v2/video/generate", v2_body()).json()["data"]["video_id"]
    url = client.get(f"/v2/videos/{video_id}").json()["data"]["video_url"]
    assert client.session.get(url, timeout=5).status_code == 200

    def refusal() -> list[requests.Response]:
        response = client.session.get(url, timeout=5)
        return [response] if response.status_code == 403 else []

    (expired,) = wait_until(refusal)
    assert "Request has expired" in expired.text


# Faults ---------------------------------------------------------------------------------------


def test_status_fault_answers_without_performing(client: Client, sb: Sandbox) -> None:
    sb.inject(Fault(method="POST", path_prefix="/v2/video", status=429, retry_after="2"))
    refused = client.post("/v2/video/generate", v2_body())
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    assert refused.json() == {"error": "Too Many Requests", "data": None}
    assert sb.videos == {}
    assert client.post("/v2/video/generate", v2_body()).status_code == 200
    assert [r.fault for r in seen(sb, "api", "POST")] == ["status", None]


def test_status_fault_uses_each_endpoints_envelope(client: Client, sb: Sandbox) -> None:
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    sb.inject(Fault(path_prefix="/v3/", status=503, retry_after=date))
    v3 = client.post("/v3/videos", {})
    assert v3.status_code == 503 and v3.headers["Retry-After"] == date
    assert v3_error(v3)["code"] == "service_unavailable"

    sb.inject(Fault(path_prefix="/v1/video_status.get", status=500))
    old = client.get("/v1/video_status.get?video_id=x")
    assert old.status_code == 500 and old.json()["code"] != 100

    _, url = client.v1_slot()
    sb.inject(Fault(server="storage", status=503))
    storage = client.put(url, PNG, "image/png")
    assert storage.status_code == 503 and s3_code(storage) == "SlowDown"
    assert sb.assets == {}

    sb.inject(Fault(path_prefix="/v1/asset", status=402, body='{"error": "no credits"}'))
    custom = client.post("/v1/asset", {"content_type": "image/png"})
    assert custom.status_code == 402 and custom.json() == {"error": "no credits"}


def test_fault_count(client: Client, sb: Sandbox) -> None:
    sb.inject(Fault(path_prefix="/v1/asset", status=500, count=2))
    statuses = [
        client.post("/v1/asset", {"content_type": "image/png"}).status_code for _ in range(3)
    ]
    assert statuses == [500, 500, 200]


def test_fault_matching(client: Client, sb: Sandbox) -> None:
    sb.inject(Fault(server="storage", status=500))
    sb.inject(Fault(method="GET", path_prefix="/v1/asset", status=501))
    sb.inject(Fault(path_prefix="/v3/", status=502))
    sb.inject(Fault(method="post", path_prefix="/v1/", status=503))
    sb.inject(Fault(path_prefix="/v1/asset", status=504))
    # Only the fourth matches a POST /v1/asset on the API; the fifth waits its turn.
    assert client.post("/v1/asset", {"content_type": "image/png"}).status_code == 503
    assert client.post("/v1/asset", {"content_type": "image/png"}).status_code == 504
    assert client.post("/v1/asset", {"content_type": "image/png"}).status_code == 200
    assert client.post("/v3/videos", {}).status_code == 502
    sb.clear_faults()
    assert client.get("/v1/asset").status_code == 405


def test_delay_fault_holds_the_request_open(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    sb.inject(Fault(method="PUT", server="storage", delay_seconds=0.3))
    outcome: dict[str, Any] = {}

    def upload() -> None:
        started = time.monotonic()
        outcome["status"] = client.put(url, PNG, "image/png").status_code
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=upload)
    worker.start()
    in_flight = wait_until(lambda: seen(sb, "storage", "PUT"))
    assert in_flight[0].status == 0 and sb.assets == {}
    worker.join()
    assert outcome["status"] == 200 and outcome["seconds"] >= 0.3
    assert len(sb.assets) == 1 and seen(sb, "storage", "PUT")[0].fault == "delay"


def test_reset_fault_sends_rst_without_performing(client: Client, sb: Sandbox) -> None:
    sb.inject(Fault(path_prefix="/v2/video/generate", reset=True))
    with pytest.raises(requests.ConnectionError):
        client.post("/v2/video/generate", v2_body())
    assert sb.videos == {}
    (record,) = seen(sb, "api", "POST")
    assert (record.status, record.fault) == (0, "reset")

    sb.inject(Fault(reset=True))
    with connect(sb.api_url) as sock:
        sock.sendall(request_head("GET", sb.api_url + "/v3/videos/x"))
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)


def test_drop_response_performs_then_loses_the_answer(client: Client, sb: Sandbox) -> None:
    sb.inject(Fault(path_prefix="/v3/videos", drop_response=True))
    with pytest.raises(requests.ConnectionError):
        client.post("/v3/videos", V3_AVATAR)
    assert len(sb.videos) == 1
    retry = client.post("/v3/videos", V3_AVATAR)
    assert retry.status_code == 201
    assert len(sb.videos) == 2  # no idempotency key is documented for videos
    assert [r.fault for r in seen(sb, "api", "POST")] == ["drop_response", None]


def test_a_status_after_effect_performs_then_answers_the_status(
    client: Client, sb: Sandbox
) -> None:
    sb.inject(Fault(path_prefix="/v3/videos", status=502, after_effect=True))
    refused = client.post("/v3/videos", V3_AVATAR)
    assert refused.status_code == 502 and v3_error(refused)["code"] == "bad_gateway"
    assert len(sb.videos) == 1  # created all the same
    assert [r.fault for r in seen(sb, "api", "POST")] == ["status_after_effect"]
    with pytest.raises(ValueError, match="after_effect needs a status"):
        Fault(after_effect=True)


def test_drop_response_on_put_still_stores(client: Client, sb: Sandbox) -> None:
    asset_id, url = client.v1_slot()
    sb.inject(Fault(method="PUT", drop_response=True))
    with pytest.raises(requests.ConnectionError):
        client.put(url, PNG, "image/png")
    assert sb.assets[asset_id].sha256 == hashlib.sha256(PNG).hexdigest()


def test_latency_is_added_to_every_request(client: Client, sb: Sandbox) -> None:
    sb.latency_seconds = 0.2
    started = time.monotonic()
    _, url = client.v1_slot()
    client.put(url, PNG, "image/png")
    assert time.monotonic() - started >= 0.4


# Admin, records, lifecycle --------------------------------------------------------------------


def test_admin_endpoints(client: Client, sb: Sandbox) -> None:
    admin = f"{sb.api_url}/_sandbox"
    fault = {"path_prefix": "/v1/asset", "status": 429, "retry_after": "1"}
    assert client.session.post(f"{admin}/faults", json=fault, timeout=5).status_code == 200
    assert client.post("/v1/asset", {"content_type": "image/png"}).status_code == 429
    assert client.session.post(f"{admin}/faults", json={"bogus": 1}, timeout=5).status_code == 400
    client.session.post(f"{admin}/faults", json=fault, timeout=5)
    assert client.session.delete(f"{admin}/faults", timeout=5).status_code == 200
    asset_id = client.v1_asset()
    client.post("/v2/video/generate", v2_body())

    recorded = client.session.get(f"{admin}/requests", timeout=5).json()["data"]
    assert [r["path"] for r in recorded][:2] == ["/v1/asset", "/v1/asset"]
    assert not any(r["path"].startswith("/_sandbox") for r in recorded)
    assert asset_id in client.session.get(f"{admin}/assets", timeout=5).json()["data"]
    assert len(client.session.get(f"{admin}/videos", timeout=5).json()["data"]) == 1

    _, url = client.v1_slot()
    assert client.session.post(f"{admin}/expire-slots", timeout=5).status_code == 200
    assert client.put(url, PNG, "image/png").status_code == 403
    assert client.session.post(f"{admin}/reset", timeout=5).status_code == 200
    assert sb.assets == {} and sb.videos == {} and sb.requests == []


def test_requests_are_recorded_in_order_with_refusals(client: Client, sb: Sandbox) -> None:
    client.post("/v1/asset", {"content_type": "image/png"}, key="bad")
    asset_id, url = client.v1_slot()
    client.put(url, PNG, "image/png")
    records = sb.requests
    assert [(r.server, r.method, r.path, r.status) for r in records] == [
        ("api", "POST", "/v1/asset", 401),
        ("api", "POST", "/v1/asset", 200),
        ("storage", "PUT", f"/uploads/{asset_id}", 200),
    ]
    assert records[0].headers["X-Api-Key"] == "bad"
    assert records[2].body_bytes == len(PNG) and "X-Amz-Signature" in records[2].query
    assert records[0].at <= records[1].at <= records[2].at
    sb.clear_requests()
    assert sb.requests == []


def test_reset_forgets_everything(client: Client, sb: Sandbox) -> None:
    _, url = client.v1_slot()
    client.v1_asset()
    client.post("/v2/video/generate", v2_body())
    sb.inject(Fault(status=500, count=100))
    sb.reset()
    assert (sb.assets, sb.videos, sb.requests) == ({}, {}, [])
    assert client.put(url, PNG, "image/png").status_code == 403
    assert client.post("/v1/asset", {"content_type": "image/png"}).status_code == 200


def test_connections_are_kept_alive_even_after_a_refusal(sb: Sandbox) -> None:
    split = urlsplit(sb.api_url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=5)
    headers = {"X-Api-Key": KEY, "Content-Type": "application/json"}
    connection.request("POST", "/v1/asset", body='{"content_type": "image/png"}', headers=headers)
    slot = connection.getresponse()
    slot.read()
    sock = connection.sock
    connection.request("POST", "/v1/asset", body='{"content_type": 1}', headers=headers)
    refused = connection.getresponse()
    refused.read()
    connection.request("POST", "/v1/asset", body='{"content_type": "image/png"}', headers=headers)
    ok = connection.getresponse()
    ok.read()
    assert (slot.status, refused.status, ok.status) == (200, 400, 200)
    assert connection.sock is sock
    connection.close()


def test_storage_connection_survives_a_refused_put(client: Client) -> None:
    _, url = client.v1_slot()
    split = urlsplit(url)
    target = f"{split.path}?{split.query}"
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=5)
    connection.request("PUT", target, body=PNG, headers={"Content-Type": "image/jpeg"})
    refused = connection.getresponse()
    refused.read()
    sock = connection.sock
    connection.request("PUT", target, body=PNG, headers={"Content-Type": "image/png"})
    stored = connection.getresponse()
    stored.read()
    assert (refused.status, stored.status) == (403, 200)
    assert connection.sock is sock
    connection.close()


def test_a_refused_large_put_still_gets_its_answer(client: Client) -> None:
    # http.client, unlike urllib3, reads no answer once the server stops reading the body.
    _, url = client.v1_slot("video/mp4")
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=5)
    body = bytes(32 * MIB)
    connection.request("PUT", f"{split.path}?{split.query}", body, {"Content-Type": "image/png"})
    response = connection.getresponse()
    assert response.status == 403 and b"SignatureDoesNotMatch" in response.read()
    assert response.getheader("Connection") == "close"
    connection.close()


def test_data_dir_is_used_and_temporary_one_removed(tmp_path: Path) -> None:
    with Sandbox(api_key=KEY, data_dir=tmp_path) as kept, requests.Session() as session:
        asset_id = Client(kept, session).v1_asset()
        assert kept.assets[asset_id].path.parent.parent == tmp_path
    assert (tmp_path / "assets" / asset_id).read_bytes() == PNG

    temporary = Sandbox(api_key=KEY)
    with temporary:
        data_dir = temporary.data_dir
        assert data_dir.is_dir()
    assert not data_dir.exists()


def test_stop_is_prompt_with_idle_keepalive_connections(sb: Sandbox) -> None:
    with requests.Session() as session:
        Client(sb, session).v1_slot()
        api_url = sb.api_url
        started = time.monotonic()
        sb.stop()
        assert time.monotonic() - started < 60  # not the 120 s idle timeout of the connection
        with pytest.raises(requests.ConnectionError):
            session.post(f"{api_url}/v1/asset", json={}, timeout=2)


def test_serve_prints_its_urls_and_stops_on_sigterm(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from watcher.sandbox import serve; "
        f"sys.exit(serve('127.0.0.1', 0, 'cli-key', Path({str(tmp_path)!r})))"
    )
    command = [sys.executable, "-c", code]
    root = Path(__file__).parents[1]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=root) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            urls = [re.findall(r"http://\S+", line) for line in lines]
            assert len(urls[0]) == len(urls[1]) == 1 and "cli-key" in lines[2]
            response = requests.post(
                f"{urls[0][0]}/v1/asset",
                json={"content_type": "image/png"},
                headers={"X-Api-Key": "cli-key"},
                timeout=5,
            )
            assert response.status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_admin_settings_change_tunables_at_run_time() -> None:
    with Sandbox() as sandbox:
        answer = requests.post(
            f"{sandbox.api_url}/_sandbox/settings", json={"latency_seconds": 0.05}, timeout=5
        )
        assert answer.status_code == 200
        assert sandbox.latency_seconds == 0.05
        started = time.monotonic()
        requests.get(f"{sandbox.api_url}/v2/videos/x", headers={"X-Api-Key": "sandbox"}, timeout=5)
        assert time.monotonic() - started >= 0.05
        refused = requests.post(
            f"{sandbox.api_url}/_sandbox/settings", json={"api_key": "x"}, timeout=5
        )
        assert refused.status_code == 400
        assert sandbox.api_key == "sandbox"


def test_rate_limiter_refills_its_bucket_per_key_at_the_set_rate() -> None:
    from watcher.sandbox.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("a", 8.0, 3) for _ in range(3)] == [None, None, None]
    assert limiter.take("a", 8.0, 3) == 1  # empty: Retry-After in whole seconds
    assert limiter.take("b", 8.0, 3) is None  # another key has its own bucket
    now[0] += 0.125  # one token back
    assert limiter.take("a", 8.0, 3) is None
    assert limiter.take("a", 8.0, 3) == 1
    now[0] += 60  # refills up to the burst, no further
    assert [limiter.take("a", 8.0, 3) for _ in range(4)] == [None, None, None, 1]
    assert limiter.take("a", 0.0, 3) is None  # no limit


def test_rate_limit_answers_429_with_retry_after_and_spares_storage() -> None:
    with Sandbox(api_key=KEY) as sandbox, requests.Session() as session:
        answer = session.post(
            f"{sandbox.api_url}/_sandbox/settings",
            json={"rate_limit_per_second": 0.5, "rate_limit_burst": 2},
            timeout=5,
        )
        assert answer.status_code == 200
        assert sandbox.rate_limit_per_second == 0.5 and sandbox.rate_limit_burst == 2

        def slot() -> requests.Response:
            return session.post(
                f"{sandbox.api_url}/v1/asset",
                json={"content_type": "image/png"},
                headers={"X-Api-Key": KEY},
                timeout=5,
            )

        first, second, third = slot(), slot(), slot()
        assert first.status_code == second.status_code == 200
        assert third.status_code == 429
        assert third.headers["Retry-After"] == "2"
        assert third.json()["error"]
        # The refused request was not performed: two slots only.
        assert [seen.status for seen in sandbox.requests] == [200, 200, 429]
        # Presigned PUTs carry no key and are not limited.
        for data in (first.json()["data"], second.json()["data"]):
            put = session.put(
                data["url"], data=PNG, headers={"Content-Type": "image/png"}, timeout=5
            )
            assert put.status_code == 200
        # The upload host shares the key's bucket.
        upload = session.post(
            f"{sandbox.upload_url}/v1/asset",
            data=PNG,
            headers={"X-API-KEY": KEY, "Content-Type": "image/png"},
            timeout=5,
        )
        assert upload.status_code == 429 and upload.headers["Retry-After"] == "2"
        sandbox.rate_limit_per_second = 0.0
        assert slot().status_code == 200
        refused = session.post(
            f"{sandbox.api_url}/_sandbox/settings", json={"rate_limit_burst": 0}, timeout=5
        )
        assert refused.status_code == 400
