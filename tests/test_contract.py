"""The contract, endpoint by endpoint: what the client sends and reads, against HeyGen's schemas.

The schemas in ``tests/contract/`` are transcribed from the project's API contract (HeyGen's
published request/response schemas and public reference). For every endpoint the client calls,
``ENDPOINTS`` names the fields it sends and the fields it reads; the tests check that

- each of those fields exists in the endpoint's schema (nothing undocumented is sent or read);
- the client's real requests, captured on the wire while it talks to the sandbox, validate
  against the request schemas;
- the sandbox's real answers over HTTP validate against the response schemas, errors included.

The batch calls go through `watcher.heygen.batches`, the same functions the batcher uses; the
sandbox's `GET /v3/assets/statuses` (which the client does not call) is checked against the
same read model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import media
import pytest
import requests
from conftest import SANDBOX_KEY, fast_api, wait_for
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from watcher.config.apikey import ApiKey
from watcher.config.templates import Template
from watcher.heygen import videos
from watcher.heygen.batches import complete_batch, create_batch, read_batch
from watcher.heygen.body import sha256_file
from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import ApiError
from watcher.heygen.presigned import PresignedProtocol
from watcher.heygen.transport import Answer
from watcher.heygen.uploadfile import LocalFile
from watcher.heygen.uploads import PROTOCOLS, make_protocol
from watcher.heygen.v3direct import complete_v3
from watcher.sandbox import Fault, Sandbox

CONTRACT_DIR = Path(__file__).parent / "contract"


@dataclass(frozen=True)
class Endpoint:
    method: str
    host: str  # api | upload
    path: str  # a regular expression over the request path
    request: str | None  # schema name for a JSON body, None for raw or multipart bodies
    response: str
    sent: tuple[str, ...]  # dotted field paths (``[]`` for "each item")
    read: tuple[str, ...]

    def matches(self, method: str, host: str, path: str) -> bool:
        return (method, host) == (self.method, self.host) and re.fullmatch(
            self.path, path
        ) is not None


# The table the client is held to. `read` lists what the client looks at in a success answer.
ENDPOINTS: dict[str, Endpoint] = {
    "POST /v1/asset": Endpoint(
        "POST", "api", r"/v1/asset", "v1_asset.request", "v1_asset.response",
        sent=("content_type",),
        read=("data.url", "data.asset_id"),
    ),
    "POST upload.heygen.com/v1/asset": Endpoint(
        "POST", "upload", r"/v1/asset", None, "upload_asset.response",
        sent=(),  # the raw bytes; Content-Type, Content-Length and X-API-KEY headers
        read=("code", "data.id", "data.url"),
    ),
    "POST /v3/assets/direct-uploads": Endpoint(
        "POST", "api", r"/v3/assets/direct-uploads", "v3_direct_upload.request",
        "v3_direct_upload.response",
        sent=("filename", "content_type", "size_bytes", "checksum_sha256"),
        read=("data.asset_id", "data.upload_url", "data.upload_headers",
              "data.expires_in_seconds"),
    ),
    "POST /v3/assets/{id}/complete": Endpoint(
        "POST", "api", r"/v3/assets/[^/]+/complete", "v3_complete.request",
        "v3_complete.response",
        sent=("checksum_sha256",),
        read=("data.url", "data.status"),
    ),
    "POST /v3/assets": Endpoint(
        "POST", "api", r"/v3/assets", None, "v3_multipart.response",
        sent=(),  # multipart/form-data with one part named `file`
        read=("data.asset_id", "data.url"),
    ),
    "POST /v3/assets/direct-uploads/batches": Endpoint(
        "POST", "api", r"/v3/assets/direct-uploads/batches", "v3_batch_create.request",
        "v3_batch_create.response",
        sent=("files[].filename", "files[].content_type", "files[].size_bytes",
              "files[].checksum_sha256"),
        read=("data.batch_id", "data.items[].asset_id", "data.items[].upload_url",
              "data.items[].upload_headers", "data.items[].expires_in_seconds"),
    ),
    "POST /v3/assets/complete/batches": Endpoint(
        "POST", "api", r"/v3/assets/complete/batches", "v3_complete_batch.request",
        "v3_complete_batch.response",
        sent=("batch_id",),
        read=(),
    ),
    "GET /v3/assets/batches/{id}": Endpoint(
        "GET", "api", r"/v3/assets/batches/[^/]+", None, "v3_batch.response",
        sent=("token (query)",),
        read=("data.items[].item_index", "data.items[].status", "data.items[].video_id",
              "data.items[].error.code", "data.items[].error.message", "data.has_more",
              "data.next_token"),
    ),
    "POST /v2/video/generate": Endpoint(
        "POST", "api", r"/v2/video/generate", "v2_generate.request", "v2_generate.response",
        sent=(),  # the template's rendered body, as configured
        read=("data.video_id",),
    ),
    "POST /v2/template/{id}/generate": Endpoint(
        "POST", "api", r"/v2/template/[^/]+/generate", "v2_template.request",
        "v2_generate.response",
        sent=(),
        read=("data.video_id",),
    ),
    "POST /v3/videos": Endpoint(
        "POST", "api", r"/v3/videos", "v3_videos.request", "v3_videos.response",
        sent=(),
        read=("data.video_id",),
    ),
    "POST /v3/templates/{id}": Endpoint(
        "POST", "api", r"/v3/templates/[^/]+", None, "v3_video_resource.response",
        sent=(),  # the body is not in the contract: the template's, as configured
        read=("data.id",),
    ),
    "GET /v2/videos/{id}": Endpoint(
        "GET", "api", r"/v2/videos/[^/]+", None, "v2_status.response",
        sent=(),
        read=("data.status", "data.video_url", "data.thumbnail_url", "data.duration",
              "data.failure_code", "data.failure_message"),
    ),
    "GET /v3/videos/{id}": Endpoint(
        "GET", "api", r"/v3/videos/[^/]+", None, "v3_video_resource.response",
        sent=(),
        read=("data.status", "data.video_url", "data.thumbnail_url", "data.duration",
              "data.failure_code", "data.failure_message"),
    ),
    "GET /v1/video_status.get": Endpoint(
        "GET", "api", r"/v1/video_status\.get", None, "v1_status.response",
        sent=("video_id (query)",),
        read=("code", "data.status", "data.video_url", "data.thumbnail_url", "data.duration",
              "data.error", "data.error.code", "data.error.message"),
    ),
}  # fmt: skip


# Schemas -------------------------------------------------------------------------------------


def _load_schemas() -> dict[str, dict[str, Any]]:
    return {
        path.name.removesuffix(".json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(CONTRACT_DIR.glob("*.json"))
    }


SCHEMAS = _load_schemas()
REGISTRY: Registry = Registry().with_resources(
    (f"{name}.json", Resource.from_contents(schema)) for name, schema in SCHEMAS.items()
)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[name], registry=REGISTRY)


def problems(name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator(name).iter_errors(instance)
    ]


def has_field(schema: dict[str, Any], dotted: str) -> bool:
    """Whether a dotted path (``files[].filename``) is named by the schema, through refs and
    unions."""
    node_sets = [[schema]]
    for part in dotted.split("."):
        array = part.endswith("[]")
        name = part.removesuffix("[]")
        found = []
        for node in _expand(node_sets[-1]):
            child = node.get("properties", {}).get(name)
            if child is None:
                continue
            if array:
                found.extend(_expand([child]))
                found = [item for c in found for item in _expand([c.get("items", {})])]
            else:
                found.append(child)
        if not found:
            return False
        node_sets.append(found)
    return True


def _expand(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes with their union branches and references resolved."""
    out: list[dict[str, Any]] = []
    for node in nodes:
        if "$ref" in node:
            out.extend(_expand([SCHEMAS[node["$ref"].removesuffix(".json")]]))
            continue
        out.append(node)
        for key in ("oneOf", "anyOf", "allOf"):
            out.extend(_expand(node.get(key, [])))
    return out


def test_every_schema_is_valid_json_schema() -> None:
    for name, schema in SCHEMAS.items():
        Draft202012Validator.check_schema(schema)
        assert schema.get("title"), f"{name} says which call it describes"


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_every_field_sent_or_read_is_in_the_schema(name: str) -> None:
    endpoint = ENDPOINTS[name]
    for field in endpoint.sent:
        if field.endswith(" (query)"):
            continue  # a query parameter, documented with the path
        assert endpoint.request is not None and has_field(SCHEMAS[endpoint.request], field), (
            f"{name} sends {field}, which its request schema does not name"
        )
    for field in endpoint.read:
        assert has_field(SCHEMAS[endpoint.response], field), (
            f"{name} reads {field}, which its response schema does not name"
        )


def test_the_checker_itself_refuses_undocumented_fields() -> None:
    assert not has_field(SCHEMAS["v3_video_resource.response"], "data.video_id")
    assert not has_field(SCHEMAS["v1_asset.response"], "data.id")
    assert has_field(SCHEMAS["v3_batch_create.request"], "files[].size_bytes")
    assert not has_field(SCHEMAS["v3_batch.response"], "data.items[].asset_id")
    assert problems("v3_videos.request", {"avatar_id": "a", "script": "s", "voice_id": "v"})


# Traffic -------------------------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    host: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None for raw and multipart bodies
    status: int
    answer: Any  # parsed JSON answer, or None


class Recorder:
    """Keeps every exchange a client's API session has, as sent and as answered (a response
    hook: the requests and answers are the real ones on the wire)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.hosts = {
            urlsplit(sandbox.api_url).netloc: "api",
            urlsplit(sandbox.upload_url).netloc: "upload",
        }
        self.exchanges: list[Exchange] = []

    def attach(self, client: HeyGenClient) -> HeyGenClient:
        client._api_transport.observers.append(self._record)
        return client

    def _record(self, answer: Answer) -> None:
        split = urlsplit(answer.url)
        raw = answer.request_body
        body = None
        if isinstance(raw, (bytes, str)) and "json" in answer.request_headers.get(
            "Content-Type", ""
        ):
            body = json.loads(raw)
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        self.exchanges.append(
            Exchange(
                answer.method,
                self.hosts.get(split.netloc, split.netloc),
                split.path,
                dict(answer.request_headers),
                body,
                answer.status_code,
                parsed,
            )
        )

    def of(self, name: str) -> list[Exchange]:
        endpoint = ENDPOINTS[name]
        return [x for x in self.exchanges if endpoint.matches(x.method, x.host, x.path)]


@pytest.fixture
def recorder(sandbox: Sandbox) -> Iterator[Recorder]:
    yield Recorder(sandbox)


def recorded_client(sandbox: Sandbox, recorder: Recorder, **api: Any) -> HeyGenClient:
    return recorder.attach(HeyGenClient(fast_api(sandbox, **api), ApiKey(SANDBOX_KEY, "test")))


def local(tmp_path: Path, name: str, data: bytes, content_type: str) -> LocalFile:
    path = tmp_path / name
    path.write_bytes(data)
    return LocalFile(path, len(data), content_type, None)


def hashed(file: LocalFile) -> LocalFile:
    return LocalFile(file.path, file.size, file.content_type, sha256_file(file.path))


def endpoint_of(exchange: Exchange) -> tuple[str, Endpoint]:
    # The most specific pattern wins (/v3/assets/direct-uploads before /v3/assets).
    found = [
        (name, e)
        for name, e in ENDPOINTS.items()
        if e.matches(exchange.method, exchange.host, exchange.path)
    ]
    assert found, f"the client called {exchange.method} {exchange.path}, which is not in the table"
    return max(found, key=lambda item: len(item[1].path))


def drive_every_endpoint(tmp_path: Path, sandbox: Sandbox, recorder: Recorder) -> None:
    """The client's own calls, each endpoint at least once, successes and a failed video."""
    client = recorded_client(sandbox, recorder)
    assets = {}
    for protocol in sorted(PROTOCOLS):
        file = local(tmp_path, f"{protocol}.png", media.png(seed=len(protocol)), "image/png")
        if protocol == "v3-direct":  # hashed first, as the daemon does: the create carries it
            file = hashed(file)
        protocol_client = recorded_client(sandbox, recorder, upload_protocol=protocol)
        assets[protocol] = make_protocol(protocol_client).upload(file)
    image = assets["v3-direct"]
    complete_v3(client, image.asset_id, None)  # asked again, without a checksum
    audio = make_protocol(recorded_client(sandbox, recorder, upload_protocol="v1-presigned"))
    voice = audio.upload(local(tmp_path, "voice.mp3", media.mp3(), "audio/mpeg"))
    # A batch, as the batcher drives it: create, PUT, complete, read every page of items.
    sandbox.batch_page_size = 1
    sandbox.fail_ingestion("refused.png", "invalid_media", "cannot be decoded")
    batch_files = [
        hashed(local(tmp_path, name, media.png(seed=40 + i), "image/png"))
        for i, name in enumerate(("batch.png", "refused.png"))
    ]
    v3 = make_protocol(recorded_client(sandbox, recorder, upload_protocol="v3-direct"))
    created = create_batch(client, batch_files, "v3-direct")
    for file, slot in zip(batch_files, created.slots, strict=True):
        assert isinstance(v3, PresignedProtocol)
        v3.put_with_retries(file, slot)
    complete_batch(client, created.batch_id)
    items = read_batch(client, created.batch_id)
    assert [(i.index, i.status, i.asset_id is not None) for i in items] == [
        (0, "completed", True),
        (1, "failed", True),
    ]
    assert items[1].reason == "invalid_media: cannot be decoded"

    sandbox.queue_video_outcome("completed")
    bodies = {
        "/v2/video/generate": {
            "video_inputs": [
                {
                    "character": {"type": "avatar", "avatar_id": "a1", "avatar_style": "normal"},
                    "voice": {"type": "audio", "audio_url": voice.url},
                    "background": {"type": "image", "url": image.url},
                },
                {
                    "character": {"type": "talking_photo", "talking_photo_id": "tp1"},
                    "voice": {"type": "text", "input_text": "Hello", "voice_id": "v1"},
                    "background": {"type": "color", "value": "#ffffff"},
                },
            ],
            "dimension": {"width": 1280, "height": 720},
            "title": "t",
        },
        "/v2/template/tpl_1/generate": {
            "variables": {
                "photo": {
                    "name": "photo",
                    "type": "image",
                    "properties": {"url": image.url, "asset_id": image.asset_id, "fit": "cover"},
                },
                "caption": {"name": "caption", "type": "text", "properties": {"content": "x"}},
            },
        },
        "/v3/videos": {
            "type": "image",
            "image": {"type": "asset_id", "asset_id": image.asset_id},
            "script": "Hello",
            "voice_id": "v1",
            "aspect_ratio": "9:16",
            "background": {"type": "color", "value": "#000000"},
        },
        "/v3/templates/tpl_2": {
            "variables": {
                "photo": {"name": "photo", "type": "image", "properties": {"asset_id": "x"}}
            },
        },
    }
    bodies["/v3/templates/tpl_2"]["variables"]["photo"]["properties"]["asset_id"] = image.asset_id
    video_ids = {
        endpoint: videos.generate(client, endpoint, body) for endpoint, body in bodies.items()
    }
    sandbox.queue_video_outcome("failed", failure_code="E1", failure_message="no voice")
    failed_id = videos.generate(client, "/v3/videos", bodies["/v3/videos"])
    for video_id in [*video_ids.values(), failed_id]:
        for template in (
            Template("t", endpoint="/v2/video/generate"),
            Template("t", endpoint="/v3/videos"),
            Template("t", endpoint="/v1/anything"),
        ):
            wait_for(
                lambda t=template, v=video_id: (
                    videos.get_status(client, t.status_path(v)).status in ("completed", "failed")
                ),
                what="a final status",
            )


def test_the_client_speaks_the_contract_and_the_sandbox_answers_it(
    tmp_path: Path, sandbox: Sandbox, recorder: Recorder
) -> None:
    drive_every_endpoint(tmp_path, sandbox, recorder)
    seen = set()
    failures = []
    for exchange in recorder.exchanges:
        name, endpoint = endpoint_of(exchange)
        seen.add(name)
        assert 200 <= exchange.status < 300, (name, exchange.status, exchange.answer)
        if endpoint.request is not None:
            failures += [f"{name} request: {p}" for p in problems(endpoint.request, exchange.body)]
        if endpoint.response:
            failures += [
                f"{name} answer: {p}" for p in problems(endpoint.response, exchange.answer)
            ]
        assert "Idempotency-Key" not in exchange.headers or name.endswith("/batches"), name
    assert not failures, "\n".join(failures)
    assert seen == set(ENDPOINTS), f"not exercised: {sorted(set(ENDPOINTS) - seen)}"


def test_what_the_client_sends_on_the_wire(
    tmp_path: Path, sandbox: Sandbox, recorder: Recorder
) -> None:
    drive_every_endpoint(tmp_path, sandbox, recorder)
    for exchange in recorder.exchanges:
        key_header = "X-API-KEY" if exchange.host == "upload" else "X-Api-Key"
        assert exchange.headers.get(key_header) == SANDBOX_KEY
    (upload,) = recorder.of("POST upload.heygen.com/v1/asset")
    assert upload.headers["Content-Type"] == "image/png"
    assert int(upload.headers["Content-Length"]) > 0 and "Transfer-Encoding" not in upload.headers
    (multipart,) = recorder.of("POST /v3/assets")
    assert multipart.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    (batch,) = recorder.of("POST /v3/assets/direct-uploads/batches")
    assert set(batch.body["files"][0]) == {
        "filename",
        "content_type",
        "size_bytes",
        "checksum_sha256",
    }
    storage = [r for r in sandbox.requests if r.server == "storage"]
    assert storage and all("x-api-key" not in {h.lower() for h in r.headers} for r in storage)


def test_failed_video_reasons_match_the_schemas(
    sandbox: Sandbox, recorder: Recorder, tmp_path: Path
) -> None:
    client = recorded_client(sandbox, recorder)
    sandbox.queue_video_outcome("failed", failure_code="E9", failure_message="bad avatar")
    body = {"type": "avatar", "avatar_id": "a", "script": "Hi", "voice_id": "v"}
    video_id = videos.generate(client, "/v3/videos", body)
    for path in (f"/v3/videos/{video_id}", f"/v2/videos/{video_id}",
                 f"/v1/video_status.get?video_id={video_id}"):  # fmt: skip
        status = wait_for(
            lambda p=path: (s := videos.get_status(client, p)).status == "failed" and s,
            what="the failure",
        )
        assert status.error == "E9: bad avatar", path
    for exchange in recorder.exchanges[1:]:
        _, endpoint = endpoint_of(exchange)
        assert not problems(endpoint.response, exchange.answer), exchange.path


def test_the_sandbox_statuses_answer_the_read_model(tmp_path: Path, sandbox: Sandbox) -> None:
    client = HeyGenClient(fast_api(sandbox), ApiKey(SANDBOX_KEY, "test"))
    file = hashed(local(tmp_path, "s.png", media.png(seed=90), "image/png"))
    created = create_batch(client, [file], "v3-direct")
    answer = requests.get(
        f"{sandbox.api_url}/v3/assets/statuses",
        params={"asset_ids": f"{created.slots[0].asset_id},unknown", "batch_ids": created.batch_id},
        headers={"X-Api-Key": SANDBOX_KEY},
        timeout=10,
    ).json()
    client.close()
    assert not problems("v3_statuses.response", answer), answer
    assert [item["status"] for item in answer["data"]["items"]] == [
        "queued",
        "not_found",
        "queued",
    ]


@pytest.mark.parametrize(
    ("host", "method", "path", "body", "schema"),
    [
        ("api", "POST", "/v3/assets/direct-uploads", {"filename": "a"}, "error_v3.response"),
        ("api", "POST", "/v3/videos", {"avatar_id": "a"}, "error_v3.response"),
        ("api", "GET", "/v3/videos/missing", None, "error_v3.response"),
        ("api", "POST", "/v1/asset", {"content_type": "text/plain"}, "error_v1.response"),
        ("api", "GET", "/v2/videos/missing", None, "error_v1.response"),
        ("api", "GET", "/v1/video_status.get?video_id=missing", None, "error_code.response"),
        ("upload", "POST", "/v1/asset", None, "error_code.response"),
    ],
)
def test_error_answers_match_their_envelopes(
    sandbox: Sandbox,
    recorder: Recorder,
    host: str,
    method: str,
    path: str,
    body: Any,
    schema: str,
) -> None:
    client = recorded_client(sandbox, recorder)
    with pytest.raises(ApiError):
        if host == "upload":
            client.request(method, path, data=b"x", headers={"Content-Type": "audio/wav"},
                           upload_host=True, replay_safe=False)  # fmt: skip
        else:
            client.request(method, path, json=body)
    (exchange,) = recorder.exchanges
    assert not problems(schema, exchange.answer), exchange.answer


@pytest.mark.parametrize("status", [402, 413, 429])
def test_documented_v3_codes_for_their_statuses(
    sandbox: Sandbox, recorder: Recorder, status: int
) -> None:
    sandbox.inject(Fault(path_prefix="/v3/", status=status, count=10))
    client = recorded_client(sandbox, recorder, max_attempts=1)
    with pytest.raises(ApiError):
        client.request("GET", "/v3/videos/x")
    (exchange,) = recorder.exchanges
    assert not problems("error_v3.response", exchange.answer)
    expected = {402: "insufficient_credit", 413: "payload_too_large", 429: "rate_limit_exceeded"}
    assert exchange.answer["error"]["code"] == expected[status]


def test_the_examples_in_the_docs_are_valid_requests() -> None:
    """config.example.yaml's active template and the configuration doc's /v3/videos example,
    rendered."""
    import yaml

    from watcher.config.templates import SAMPLE_VALUES, render

    root = Path(__file__).parent.parent
    example = yaml.safe_load((root / "config.example.yaml").read_text(encoding="utf-8"))
    environ = {"HEYGEN_VOICE_ID": "v1"}
    background = render(example["templates"]["background"]["body"], SAMPLE_VALUES, environ=environ)
    assert not problems("v2_generate.request", background)
    readme = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(templates:\n  portrait:.*?)```", readme, re.S)
    assert block is not None
    portrait = yaml.safe_load(block.group(1))["templates"]["portrait"]
    assert portrait["endpoint"] == "/v3/videos"
    rendered = render(portrait["body"], {**SAMPLE_VALUES, "script": "Hi"}, environ=environ)
    assert not problems("v3_videos.request", rendered)
