"""The HeyGen client against the real sandbox over HTTP on 127.0.0.1."""

from __future__ import annotations

import email.utils
import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY, fast_api

from watcher.config.apikey import ApiKey
from watcher.config.templates import Template
from watcher.heygen import videos
from watcher.heygen.body import WHOLE_BODY_BYTES, FileBody, FileChangedError, sha256_file
from watcher.heygen.client import HeyGenClient
from watcher.heygen.envelope import parse_retry_after
from watcher.heygen.errors import (
    AuthError,
    FileTooLarge,
    Forbidden,
    PermanentError,
    QuotaError,
    RateLimited,
    ResponseLost,
    TransientError,
    UnsupportedType,
)
from watcher.heygen.presigned import V1Presigned
from watcher.heygen.uploadfile import LocalFile
from watcher.heygen.uploads import PROTOCOLS, make_protocol
from watcher.sandbox import Fault, Sandbox


def local_file(path: Path, data: bytes, content_type: str) -> LocalFile:
    path.write_bytes(data)
    return LocalFile(path, len(data), content_type, hashlib.sha256(data).hexdigest())


def client_for(sandbox: Sandbox, **overrides: object) -> HeyGenClient:
    return HeyGenClient(fast_api(sandbox, **overrides), ApiKey(SANDBOX_KEY, "test"))


def api_requests(sandbox: Sandbox, method: str, prefix: str) -> list:
    return [r for r in sandbox.requests if r.method == method and r.path.startswith(prefix)]


# -- each protocol end to end -------------------------------------------------------------------
@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_each_protocol_stores_the_exact_bytes(tmp_path: Path, sandbox: Sandbox, protocol: str):
    data = media.mp4(payload=300_000, seed=7)
    file = local_file(tmp_path / "clip one.mp4", data, "video/mp4")
    client = client_for(sandbox, upload_protocol=protocol)
    asset = make_protocol(client).upload(file)
    stored = sandbox.assets[asset.asset_id]
    assert stored.sha256 == file.sha256
    assert stored.size == len(data)
    assert stored.content_type == "video/mp4"
    assert stored.path.read_bytes() == data
    assert asset.protocol == protocol
    assert asset.asset_id in asset.url
    assert len(sandbox.assets) == 1


def test_v1_url_comes_from_the_configured_template(tmp_path: Path, sandbox: Sandbox):
    file = local_file(tmp_path / "a.png", media.png(), "image/png")
    client = client_for(sandbox, asset_url_template="https://cdn.example/a/${asset_id}.bin")
    asset = V1Presigned(client).upload(file)
    assert asset.url == f"https://cdn.example/a/{asset.asset_id}.bin"


def test_v3_direct_sends_checksum_and_signed_headers_and_no_idempotency_key(
    tmp_path: Path, sandbox: Sandbox
):
    file = local_file(tmp_path / "a.wav", media.wav(), "audio/wav")
    make_protocol(client_for(sandbox, upload_protocol="v3-direct")).upload(file)
    (create,) = api_requests(sandbox, "POST", "/v3/assets/direct-uploads")
    # Documented for the batch create only.
    assert "Idempotency-Key" not in create.headers
    (put,) = [r for r in sandbox.requests if r.server == "storage"]
    assert put.headers["Content-Length"] == str(file.size)
    assert "x-amz-checksum-sha256" in {name.lower() for name in put.headers}
    assert "Transfer-Encoding" not in put.headers
    assert api_requests(sandbox, "POST", "/v3/assets/")[-1].path.endswith("/complete")


def test_uploads_never_use_chunked_encoding(tmp_path: Path, sandbox: Sandbox):
    for protocol in PROTOCOLS:
        file = local_file(tmp_path / f"{protocol}.jpg", media.jpeg(protocol.encode()), "image/jpeg")
        make_protocol(client_for(sandbox, upload_protocol=protocol)).upload(file)
    body_requests = [
        r
        for r in sandbox.requests
        if r.method == "PUT" or r.path == "/v3/assets" or r.server == "upload"
    ]
    assert len(body_requests) == 4
    for seen in body_requests:
        assert "Content-Length" in seen.headers
        assert "Transfer-Encoding" not in seen.headers


# -- the key ------------------------------------------------------------------------------------
def test_the_key_goes_to_the_api_host_only(tmp_path: Path, sandbox: Sandbox):
    for protocol in PROTOCOLS:
        file = local_file(tmp_path / f"{protocol}.png", media.png(seed=len(protocol)), "image/png")
        make_protocol(client_for(sandbox, upload_protocol=protocol)).upload(file)
    storage = [r for r in sandbox.requests if r.server == "storage"]
    api = [r for r in sandbox.requests if r.server == "api"]
    upload = [r for r in sandbox.requests if r.server == "upload"]
    assert storage and api and upload
    for seen in storage:
        assert "x-api-key" not in {name.lower() for name in seen.headers}
        assert SANDBOX_KEY not in str(seen.headers) + seen.path + seen.query
    for seen in api:
        assert seen.headers["X-Api-Key"] == SANDBOX_KEY
    for seen in upload:
        assert seen.headers["X-API-KEY"] == SANDBOX_KEY


def test_redirects_from_the_api_are_not_followed(tmp_path: Path, sandbox: Sandbox):
    # A redirect could carry the X-Api-Key header to another host: it must be refused.
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=302, body="{}"))
    file = local_file(tmp_path / "a.png", media.png(), "image/png")
    with pytest.raises(PermanentError):
        V1Presigned(client_for(sandbox)).upload(file)
    assert len(api_requests(sandbox, "POST", "/v1/asset")) == 1


# -- errors -------------------------------------------------------------------------------------
def test_wrong_key_is_an_auth_error_and_not_retried(tmp_path: Path, sandbox: Sandbox):
    client = HeyGenClient(fast_api(sandbox), ApiKey("wrong", "test"))
    file = local_file(tmp_path / "a.png", media.png(), "image/png")
    with pytest.raises(AuthError) as caught:
        V1Presigned(client).upload(file)
    assert caught.value.status == 401
    assert "wrong" not in str(caught.value)
    assert len(api_requests(sandbox, "POST", "/v1/asset")) == 1


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (402, QuotaError),
        (403, Forbidden),
        (400, PermanentError),
        (404, PermanentError),
        (409, PermanentError),
        (413, PermanentError),
    ],
)
def test_statuses_map_to_typed_errors_without_retry(
    client: HeyGenClient, sandbox: Sandbox, status: int, error_class: type
):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=status))
    with pytest.raises(error_class) as caught:
        client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    assert caught.value.status == status
    assert len(api_requests(sandbox, "POST", "/v1/asset")) == 1


def test_v1_string_error_message_is_kept(client: HeyGenClient, sandbox: Sandbox):
    with pytest.raises(PermanentError) as caught:
        client.request("POST", "/v1/asset", json={"content_type": "text/plain"})
    assert caught.value.status == 400
    assert "text/plain" in caught.value.message


def test_v3_error_object_gives_code_and_param(client: HeyGenClient, sandbox: Sandbox):
    with pytest.raises(PermanentError) as caught:
        client.request(
            "POST",
            "/v3/assets/direct-uploads",
            json={"filename": "a.txt", "content_type": "text/plain", "size_bytes": 3},
        )
    assert caught.value.code == "invalid_request"
    assert "content_type" in caught.value.message


def test_legacy_code_message_envelope(client: HeyGenClient, sandbox: Sandbox):
    with pytest.raises(PermanentError) as caught:
        videos.get_status(client, "/v1/video_status.get?video_id=nope")
    assert caught.value.status == 404
    assert caught.value.message


def test_malformed_success_is_a_permanent_error(client: HeyGenClient, sandbox: Sandbox):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=200, body="<html>oops"))
    with pytest.raises(PermanentError, match="malformed"):
        client.request("POST", "/v1/asset", json={"content_type": "image/png"})


def test_an_error_inside_a_200_envelope_is_raised(client: HeyGenClient, sandbox: Sandbox):
    body = '{"error": "quota exceeded", "data": null}'
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=200, body=body))
    with pytest.raises(PermanentError, match="quota exceeded"):
        client.request("POST", "/v1/asset", json={"content_type": "image/png"})


# -- retries ------------------------------------------------------------------------------------
def test_retry_after_seconds_is_honoured(client: HeyGenClient, sandbox: Sandbox):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=429, retry_after="1"))
    started = time.monotonic()
    client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    waited = time.monotonic() - started
    # At least the server's second; far less than any backoff cap or clamp would give.
    assert 1.0 <= waited < 30
    first, second = api_requests(sandbox, "POST", "/v1/asset")
    assert second.at - first.at >= 1.0


def test_retry_after_http_date_is_honoured(client: HeyGenClient, sandbox: Sandbox):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=429, retry_after=when))
    started = time.monotonic()
    client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    # HTTP dates have one-second resolution: the wait is at least about a second.
    assert 0.9 <= time.monotonic() - started < 30


def test_retry_after_is_clamped_by_config(sandbox: Sandbox):
    client = client_for(sandbox, max_retry_after_seconds=0.2)
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=429, retry_after="3600"))
    started = time.monotonic()
    client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    assert time.monotonic() - started < 60  # clamped to 0.2 s, certainly not the hour asked


def test_a_429_pauses_every_caller_sharing_the_throttle(client: HeyGenClient, sandbox: Sandbox):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=429, retry_after="1"))
    client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    left, _ = client.throttle.paused()
    assert left == 0  # the pause is over once the retry went through
    client.throttle.pause_for(0.5, "test")
    started = time.monotonic()
    client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    assert time.monotonic() - started >= 0.45


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_statuses_are_retried(client: HeyGenClient, sandbox: Sandbox, status: int):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=status, count=2))
    client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    assert len(api_requests(sandbox, "POST", "/v1/asset")) == 3


def test_attempts_are_bounded(client: HeyGenClient, sandbox: Sandbox):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=503, count=100))
    with pytest.raises(TransientError):
        client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    assert len(api_requests(sandbox, "POST", "/v1/asset")) == 4


def test_connection_resets_are_retried(tmp_path: Path, client: HeyGenClient, sandbox: Sandbox):
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", reset=True))
    sandbox.inject(Fault(method="PUT", server="storage", reset=True))
    file = local_file(tmp_path / "a.png", media.png(), "image/png")
    asset = V1Presigned(client).upload(file)
    assert sandbox.assets[asset.asset_id].sha256 == file.sha256
    assert len(sandbox.assets) == 1


def test_5xx_on_the_put_retries_the_same_slot(
    tmp_path: Path, client: HeyGenClient, sandbox: Sandbox
):
    sandbox.inject(Fault(method="PUT", server="storage", status=503, count=2))
    file = local_file(tmp_path / "a.png", media.png(), "image/png")
    V1Presigned(client).upload(file)
    puts = [r for r in sandbox.requests if r.method == "PUT"]
    assert [r.status for r in puts] == [503, 503, 200]
    assert len({r.path for r in puts}) == 1
    assert len(api_requests(sandbox, "POST", "/v1/asset")) == 1


def test_a_put_is_not_retried_once_the_service_is_known_to_be_down(
    tmp_path: Path, client: HeyGenClient, sandbox: Sandbox
):
    # The storage is already declared unreachable (another file found it so): this PUT's
    # 503 hands the file back to be held at once instead of spending its quick retries.
    protocol = V1Presigned(client)
    file = local_file(tmp_path / "a.png", media.png(), "image/png")
    slot = protocol.new_slot(file)
    client.reachability.declare_down("storage: HTTP 503", slot.url)
    sandbox.inject(Fault(method="PUT", server="storage", status=503, count=5))
    with pytest.raises(TransientError):
        protocol.put_with_retries(file, slot)
    assert [r.status for r in sandbox.requests if r.method == "PUT"] == [503]


def test_an_expired_url_gets_a_fresh_slot(tmp_path: Path, client: HeyGenClient, sandbox: Sandbox):
    protocol = V1Presigned(client)
    file = local_file(tmp_path / "a.png", media.png(), "image/png")
    stale = protocol.new_slot(file)
    sandbox.expire_slots()
    asset = protocol.upload(file, resume=stale)
    assert asset.asset_id != stale.asset_id
    puts = [r.status for r in sandbox.requests if r.method == "PUT"]
    assert puts == [403, 200]
    assert list(sandbox.assets) == [asset.asset_id]


def test_v3_expired_slot_gets_a_fresh_one(tmp_path: Path, sandbox: Sandbox):
    protocol = make_protocol(client_for(sandbox, upload_protocol="v3-direct"))
    file = local_file(tmp_path / "a.mp3", media.mp3(), "audio/mpeg")
    slots = []
    sandbox.inject(Fault(method="PUT", server="storage", status=403))
    asset = protocol.upload(file, on_slot=slots.append)
    assert len(slots) == 2
    assert asset.asset_id == slots[1].asset_id


def test_v3_lost_create_answer_is_retried_and_costs_only_an_unused_slot(
    tmp_path: Path, sandbox: Sandbox
):
    protocol = make_protocol(client_for(sandbox, upload_protocol="v3-direct"))
    file = local_file(tmp_path / "a.mp3", media.mp3(), "audio/mpeg")
    sandbox.inject(
        Fault(method="POST", path_prefix="/v3/assets/direct-uploads", drop_response=True)
    )
    protocol.upload(file)
    creates = api_requests(sandbox, "POST", "/v3/assets/direct-uploads")
    assert len(creates) == 2
    assert len(sandbox.assets) == 1  # the first slot never received bytes


def test_a_timeout_is_transient_and_nothing_hangs(sandbox: Sandbox):
    client = client_for(sandbox, timeout_seconds=0.3, max_attempts=2)
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", delay_seconds=60, count=2))
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        client.request("POST", "/v1/asset", json={"content_type": "image/png"})
    assert time.monotonic() - started < 30  # two 0.3 s timeouts, not the server's minute


# -- files --------------------------------------------------------------------------------------
def test_multipart_refuses_big_files_before_sending(tmp_path: Path, sandbox: Sandbox):
    path = tmp_path / "big.mp4"
    with open(path, "wb") as out:
        out.truncate(33 * 1024 * 1024)
    file = LocalFile(path, path.stat().st_size, "video/mp4", "0" * 64)
    with pytest.raises(FileTooLarge, match="32 MB"):
        make_protocol(client_for(sandbox, upload_protocol="v3-multipart")).upload(file)
    assert sandbox.requests == []


def test_a_file_changed_during_upload_is_detected(
    tmp_path: Path, client: HeyGenClient, sandbox: Sandbox
):
    path = tmp_path / "a.png"
    file = local_file(path, media.png(seed=1), "image/png")
    path.write_bytes(media.png(seed=2))  # same length, other bytes
    with pytest.raises(FileChangedError):
        V1Presigned(client).upload(file)


def test_file_body_reports_length_and_stops_at_it(tmp_path: Path):
    path = tmp_path / "data"
    path.write_bytes(b"x" * 10)
    body = FileBody(path, 6, prefix=b"<", suffix=b">")
    assert len(body) == 8
    assert b"".join(body) == b"<xxxxxx>"
    shrunk = FileBody(path, 20)
    with pytest.raises(FileChangedError):
        b"".join(shrunk)


def test_a_small_body_is_read_whole_by_the_same_rules(tmp_path: Path):
    path = tmp_path / "data"
    path.write_bytes(b"x" * 10)
    body = FileBody(path, 6, prefix=b"<", suffix=b">")
    assert body.whole() == b"<xxxxxx>"  # the announced length, not the file's
    assert body.finished and body.sha256() == hashlib.sha256(b"x" * 6).hexdigest()
    shrunk = FileBody(path, 20)
    with pytest.raises(FileChangedError):
        shrunk.whole()
    assert isinstance(shrunk.local_error, FileChangedError)
    path.unlink()
    gone = FileBody(path, 10)
    with pytest.raises(FileNotFoundError):
        gone.whole()
    assert isinstance(gone.local_error, FileNotFoundError)
    big = tmp_path / "big"
    big.write_bytes(b"y" * (WHOLE_BODY_BYTES + 1))
    assert FileBody(big, WHOLE_BODY_BYTES + 1).whole() is None  # streamed instead


@pytest.mark.parametrize("protocol", ["v1-presigned", "v1-upload", "v3-multipart"])
def test_a_small_file_that_shrank_is_reported_as_changed_not_as_a_network_error(
    tmp_path: Path, sandbox: Sandbox, protocol: str
):
    data = media.mp4(payload=2_000, seed=12)
    path = tmp_path / "clip.mp4"
    file = local_file(path, data, "video/mp4")
    path.write_bytes(data[:100])
    with pytest.raises(FileChangedError, match="shrank"):
        make_protocol(client_for(sandbox, upload_protocol=protocol)).upload(file)
    assert not [r for r in sandbox.requests if r.method in ("PUT",) or r.server == "upload"]


RSS_PROBE = r"""
import resource, sys
from pathlib import Path
from watcher.config.apikey import ApiKey
from watcher.config import ApiConfig
from watcher.heygen.client import HeyGenClient
from watcher.heygen.uploadfile import LocalFile
from watcher.heygen.uploads import make_protocol
path = Path(sys.argv[1])
api = ApiConfig(base_url=sys.argv[2], upload_protocol=sys.argv[4])
client = HeyGenClient(api, ApiKey(sys.argv[3], "test"))
protocol = make_protocol(client)
small = LocalFile(Path(sys.argv[5]), Path(sys.argv[5]).stat().st_size, "video/mp4", sys.argv[6])
protocol.upload(small)  # warm up: imports, connection pools
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
protocol.upload(LocalFile(path, path.stat().st_size, "video/mp4", sys.argv[7]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after)
"""


@pytest.mark.parametrize("protocol", ["v1-presigned", "v3-direct"])
def test_a_200_mb_upload_keeps_memory_flat(tmp_path: Path, sandbox: Sandbox, protocol: str):
    big = media.sized_mp4(tmp_path / "big.mp4", 200 * 1024 * 1024)
    small = media.sized_mp4(tmp_path / "small.mp4", 1024 * 1024)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_PROBE,
            str(big),
            sandbox.api_url,
            SANDBOX_KEY,
            protocol,
            str(small),
            sha256_file(small),
            sha256_file(big),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    before_kb, after_kb = map(int, result.stdout.split())
    grown_mb = (after_kb - before_kb) / 1024
    assert grown_mb < 20, f"peak RSS grew by {grown_mb:.1f} MB for a 200 MB upload"
    (asset,) = [a for a in sandbox.assets.values() if a.size == big.stat().st_size]
    assert asset.sha256 == sha256_file(big)


# -- videos -------------------------------------------------------------------------------------
def generate_body(asset_url: str) -> dict:
    return {
        "video_inputs": [
            {
                "character": {
                    "type": "avatar",
                    "avatar_id": "josh_lite3_20230714",
                    "avatar_style": "normal",
                },
                "voice": {"type": "text", "input_text": "Hello", "voice_id": "v1"},
                "background": {"type": "image", "url": asset_url},
            }
        ],
        "dimension": {"width": 1280, "height": 720},
    }


def test_generate_poll_and_download(tmp_path: Path, client: HeyGenClient, sandbox: Sandbox):
    file = local_file(tmp_path / "bg.png", media.png(), "image/png")
    asset = V1Presigned(client).upload(file)
    video_id = videos.generate(client, "/v2/video/generate", generate_body(asset.url))
    for status_path in (
        Template("t", endpoint="/v2/video/generate").status_path(video_id),
        Template("t", endpoint="/v3/videos").status_path(video_id),
        Template("t", endpoint="/v1/whatever").status_path(video_id),
    ):
        status = videos.get_status(client, status_path)
        assert status.status in ("pending", "processing", "completed")

    def completed():
        status = videos.get_status(client, f"/v2/videos/{video_id}")
        return status if status.status == "completed" else None

    from conftest import wait_for

    status = wait_for(completed, what="video completion")
    assert status.video_url
    target = tmp_path / "out" / "video.mp4"
    size = videos.download(client, status.video_url, target)
    assert size == target.stat().st_size > 0
    assert [p.name for p in target.parent.iterdir()] == ["video.mp4"]


def test_a_lost_generate_answer_is_not_resent(
    client: HeyGenClient, sandbox: Sandbox, tmp_path: Path
):
    file = local_file(tmp_path / "bg.png", media.png(), "image/png")
    asset = V1Presigned(client).upload(file)
    sandbox.inject(Fault(method="POST", path_prefix="/v2/video/generate", drop_response=True))
    with pytest.raises(ResponseLost):
        videos.generate(client, "/v2/video/generate", generate_body(asset.url))
    assert len(sandbox.videos) == 1
    assert len(api_requests(sandbox, "POST", "/v2/video/generate")) == 1


@pytest.mark.parametrize("status", [502, 503, 504, 500, 408])
def test_a_generate_answered_with_5xx_or_408_is_never_resent(
    client: HeyGenClient, sandbox: Sandbox, tmp_path: Path, status: int
):
    # A proxy's 502 may come after HeyGen created (and billed) the video.
    file = local_file(tmp_path / "bg.png", media.png(), "image/png")
    asset = V1Presigned(client).upload(file)
    sandbox.inject(
        Fault(method="POST", path_prefix="/v2/video/generate", status=status, after_effect=True)
    )
    with pytest.raises(ResponseLost) as caught:
        videos.generate(client, "/v2/video/generate", generate_body(asset.url))
    assert caught.value.status == status
    assert len(sandbox.videos) == 1
    assert len(api_requests(sandbox, "POST", "/v2/video/generate")) == 1


def test_a_generate_that_timed_out_is_never_resent(sandbox: Sandbox, tmp_path: Path):
    client = client_for(sandbox, timeout_seconds=0.3)
    sandbox.inject(Fault(method="POST", path_prefix="/v3/videos", delay_seconds=1.0))
    body = {"type": "avatar", "avatar_id": "a", "script": "Hi", "voice_id": "v"}
    with pytest.raises(ResponseLost):
        videos.generate(client, "/v3/videos", body)
    assert len(api_requests(sandbox, "POST", "/v3/videos")) == 1


def test_a_generate_whose_connection_was_refused_is_sent_again(sandbox: Sandbox):
    # Certainly never sent: safe to send again (here to a port nobody listens on, then fails).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = client_for(sandbox, base_url=f"http://127.0.0.1:{port}", max_attempts=2)
    with pytest.raises(TransientError) as caught:
        videos.generate(client, "/v2/video/generate", {})
    assert not isinstance(caught.value, ResponseLost)


def test_the_v3_template_endpoint_gives_the_id_in_data_id(
    client: HeyGenClient, sandbox: Sandbox, tmp_path: Path
):
    asset = V1Presigned(client).upload(local_file(tmp_path / "a.png", media.png(), "image/png"))
    body = {
        "variables": {
            "photo": {"name": "photo", "type": "image", "properties": {"asset_id": asset.asset_id}}
        }
    }
    video_id = videos.generate(client, "/v3/templates/tpl_1", body)
    assert video_id in sandbox.videos
    status = videos.get_status(
        client, Template("t", endpoint="/v3/templates/tpl_1").status_path(video_id)
    )
    assert status.status in ("waiting", "processing", "completed")


def test_any_status_but_completed_or_failed_is_not_final():
    for status in ("waiting", "pending", "processing", "rendering", "queued"):
        assert videos.parse_status({"status": status}).status == status
    with pytest.raises(PermanentError):
        videos.parse_status({"id": "x"})


def test_a_v1_failure_reason_given_as_an_object_is_kept(client: HeyGenClient, sandbox: Sandbox):
    sandbox.queue_video_outcome("failed", failure_code="E42", failure_message="voice not found")
    video_id = videos.generate(
        client, "/v2/video/generate", generate_body("https://example.com/bg.png")
    )

    def failed():
        status = videos.get_status(client, f"/v1/video_status.get?video_id={video_id}")
        return status if status.status == "failed" else None

    from conftest import wait_for

    status = wait_for(failed, what="the failure")
    assert status.error == "E42: voice not found"
    assert videos.parse_status({"status": "failed", "error": {"message": "m"}}).error == "m"
    assert videos.parse_status({"status": "failed", "error": "plain"}).error == "plain"


def test_rate_limited_error_carries_the_delay(client: HeyGenClient, sandbox: Sandbox):
    sandbox.inject(Fault(method="GET", path_prefix="/v2/videos/", status=429, retry_after="9"))
    with pytest.raises(RateLimited) as caught:
        client.request("GET", "/v2/videos/x", retry=False)
    assert caught.value.retry_after_seconds == 9.0


def test_v3_without_a_prior_hash_checks_the_bytes_at_completion(tmp_path: Path, sandbox: Sandbox):
    data = media.mp4(payload=100_000, seed=9)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    file = LocalFile(path, len(data), "video/mp4", None)
    asset = make_protocol(client_for(sandbox, upload_protocol="v3-direct")).upload(file)
    assert asset.sha256 == hashlib.sha256(data).hexdigest()
    (create,) = api_requests(sandbox, "POST", "/v3/assets/direct-uploads")
    assert create.status == 201
    (put,) = [r for r in sandbox.requests if r.method == "PUT"]
    assert "x-amz-checksum-sha256" not in {name.lower() for name in put.headers}
    complete = api_requests(sandbox, "POST", f"/v3/assets/{asset.asset_id}/complete")
    assert [r.status for r in complete] == [200]
    assert sandbox.assets[asset.asset_id].sha256 == asset.sha256


def test_v3_resume_after_the_file_changed_sends_the_new_bytes(tmp_path: Path, sandbox: Sandbox):
    # The slot holds the old bytes: the checksum at completion catches that, and the new
    # bytes go up instead of the old ones being completed.
    protocol = make_protocol(client_for(sandbox, upload_protocol="v3-direct"))
    first = local_file(tmp_path / "a.png", media.png(seed=1), "image/png")
    slots = []
    protocol.upload(
        LocalFile(first.path, first.size, first.content_type, None), on_slot=slots.append
    )
    first.path.write_bytes(media.png(seed=2))  # same size, other bytes
    changed = LocalFile(first.path, first.size, "image/png", None)
    asset = protocol.upload(changed, resume=slots[0])
    assert sandbox.assets[asset.asset_id].sha256 == hashlib.sha256(media.png(seed=2)).hexdigest()


# -- resuming v3 without undocumented codes; one-request uploads never replayed blindly ----------
@pytest.mark.parametrize("status", [400, 403, 404, 409, 410, 422])
def test_v3_resume_sends_the_bytes_again_after_any_4xx_completion(
    tmp_path: Path, sandbox: Sandbox, status: int
):
    protocol = make_protocol(client_for(sandbox, upload_protocol="v3-direct"))
    file = local_file(tmp_path / "a.png", media.png(seed=3), "image/png")
    slots = []
    sandbox.inject(Fault(method="PUT", server="storage", reset=True, count=4))
    with pytest.raises(TransientError):
        protocol.upload(file, on_slot=slots.append)
    sandbox.inject(Fault(method="POST", path_prefix="/v3/assets/", status=status, body="{}"))
    asset = protocol.upload(file, resume=slots[0])
    assert asset.asset_id == slots[0].asset_id  # the recorded slot, still valid
    assert sandbox.assets[asset.asset_id].sha256 == file.sha256


@pytest.mark.parametrize(("status", "error_class"), [(401, AuthError), (429, RateLimited)])
def test_v3_resume_does_not_resend_after_a_401_or_429(
    tmp_path: Path, sandbox: Sandbox, status: int, error_class: type
):
    protocol = make_protocol(client_for(sandbox, upload_protocol="v3-direct", max_attempts=1))
    file = local_file(tmp_path / "a.png", media.png(seed=4), "image/png")
    slots = []
    protocol.upload(file, on_slot=slots.append)
    sandbox.clear_requests()
    sandbox.inject(Fault(method="POST", path_prefix="/v3/assets/", status=status))
    with pytest.raises(error_class):
        protocol.upload(file, resume=slots[0])
    assert [r.method for r in sandbox.requests] == ["POST"]


@pytest.mark.parametrize("protocol", ["v3-multipart", "v1-upload"])
def test_a_one_request_upload_is_not_replayed_after_an_unclear_answer(
    tmp_path: Path, sandbox: Sandbox, protocol: str
):
    file = local_file(tmp_path / "a.png", media.png(seed=5), "image/png")
    client = client_for(sandbox, upload_protocol=protocol)
    server = "upload" if protocol == "v1-upload" else "api"
    sandbox.inject(Fault(method="POST", server=server, status=502, after_effect=True))
    with pytest.raises(ResponseLost):
        make_protocol(client).upload(file)
    assert len([r for r in sandbox.requests if r.method == "POST"]) == 1
    assert len(sandbox.assets) == 1
    sandbox.inject(Fault(method="POST", server=server, drop_response=True))
    with pytest.raises(ResponseLost):
        make_protocol(client).upload(file)
    assert len([r for r in sandbox.requests if r.method == "POST"]) == 2


def test_multipart_and_single_create_carry_no_idempotency_key(tmp_path: Path, sandbox: Sandbox):
    for protocol in ("v3-multipart", "v3-direct"):
        file = local_file(tmp_path / f"{protocol}.png", media.png(seed=6), "image/png")
        make_protocol(client_for(sandbox, upload_protocol=protocol)).upload(file)
    assert not any("Idempotency-Key" in r.headers for r in sandbox.requests)


def test_v1_upload_sends_raw_bytes_with_an_exact_length(tmp_path: Path, sandbox: Sandbox):
    data = media.mp4(payload=200_000, seed=8)
    file = local_file(tmp_path / "clip.mp4", data, "video/mp4")
    asset = make_protocol(client_for(sandbox, upload_protocol="v1-upload")).upload(file)
    (seen,) = [r for r in sandbox.requests if r.server == "upload"]
    assert (seen.method, seen.path) == ("POST", "/v1/asset")
    assert seen.headers["Content-Type"] == "video/mp4"
    assert seen.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in seen.headers
    assert sandbox.assets[asset.asset_id].path.read_bytes() == data
    assert asset.sha256 == file.sha256
    assert not [r for r in sandbox.requests if r.server != "upload"]


def test_v1_upload_refuses_wav_before_sending(tmp_path: Path, sandbox: Sandbox):
    file = local_file(tmp_path / "a.wav", media.wav(), "audio/wav")
    with pytest.raises(UnsupportedType, match="v1-upload takes"):
        make_protocol(client_for(sandbox, upload_protocol="v1-upload")).upload(file)
    assert sandbox.requests == []


def test_a_processing_completion_marks_the_asset_not_usable_yet(tmp_path: Path, sandbox: Sandbox):
    sandbox.asset_processing_seconds = 60
    file = local_file(tmp_path / "a.png", media.png(seed=9), "image/png")
    asset = make_protocol(client_for(sandbox, upload_protocol="v3-direct")).upload(file)
    assert asset.usable is False
    sandbox.asset_processing_seconds = 0
    again = make_protocol(client_for(sandbox, upload_protocol="v3-direct")).upload(
        local_file(tmp_path / "b.png", media.png(seed=10), "image/png")
    )
    assert again.usable is True


def count_proxy_reads(monkeypatch: pytest.MonkeyPatch, proxy: str) -> list[str]:
    """Set a proxy (and NO_PROXY for the sandbox) in the environment; returns the list of
    URLs the transports look the environment's proxies up for, as they do it."""
    import watcher.heygen.transport as transport

    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    reads: list[str] = []
    real = transport.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(transport, "get_environ_proxies", counted)
    return reads


def test_sessions_read_environment_proxies_once_per_origin(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watcher.heygen.transport as transport

    reads = count_proxy_reads(monkeypatch, "http://proxy.example:3128")
    session = transport.new_session(2)
    # The environment still decides: a proxy for HeyGen's host, none for an excluded one.
    remote = session.merge_environment_settings(
        "https://api.heygen.com/v1/asset", {}, None, None, None
    )
    assert remote["proxies"]["https"] == "http://proxy.example:3128"
    local = session.merge_environment_settings(f"{sandbox.api_url}/v1/asset", {}, None, None, None)
    assert "http" not in local["proxies"]
    for _ in range(3):
        answer = session.post(
            f"{sandbox.api_url}/v1/asset",
            json={"content_type": "image/png"},
            headers={"X-Api-Key": SANDBOX_KEY},
            timeout=5,
        )
        assert answer.status_code == 200
    # Once per origin, not once per request (requests walks the environment every time).
    assert len(reads) == 2
    session.close()


def test_sessions_send_no_cookies(sandbox: Sandbox) -> None:
    import watcher.heygen.transport as transport

    session = transport.new_session(2)
    # A cookie in the session's jar (as a load balancer's Set-Cookie would leave) stays there.
    session.cookies.set("sticky", "node-7")
    answer = session.post(
        f"{sandbox.api_url}/v1/asset",
        json={"content_type": "image/png"},
        headers={"X-Api-Key": SANDBOX_KEY},
        timeout=5,
    )
    assert answer.status_code == 200
    (seen,) = sandbox.requests
    assert "cookie" not in {name.lower() for name in seen.headers}
    assert seen.headers["User-Agent"].startswith("heygen-watcher/")
    session.close()


def test_the_lean_transport_sends_what_requests_sent(tmp_path: Path, sandbox: Sandbox) -> None:
    """API requests and presigned PUTs go through urllib3 directly now: HeyGen must see the
    same headers (names, values) and the same JSON bytes as requests sent."""
    import requests

    import watcher.heygen.transport as transport

    file = local_file(tmp_path / "a.png", media.png(seed=31), "image/png")
    client = client_for(sandbox)
    sent: list[transport.Answer] = []
    client._api_transport.observers.append(sent.append)
    V1Presigned(client).upload(file)
    create, put = sandbox.requests
    with transport.new_session(2) as session:
        old = session.post(
            f"{sandbox.api_url}/v1/asset",
            json={"content_type": "image/png"},
            headers={"Accept": "application/json", "X-Api-Key": SANDBOX_KEY},
            timeout=5,
        )
        slot = old.json()["data"]
        with open(file.path, "rb") as body:
            session.put(slot["url"], data=body, headers={"Content-Type": "image/png"}, timeout=5)
    old_create, old_put = sandbox.requests[2:]
    for new, was in ((create, old_create), (put, old_put)):
        assert (new.method, new.server) == (was.method, was.server)
        assert new.headers == was.headers
        assert "Transfer-Encoding" not in new.headers
    assert sent[0].request_body == old.request.body
    assert put.headers["Content-Length"] == str(file.size)
    assert "X-Api-Key" not in put.headers
    assert isinstance(old, requests.Response)


def test_the_lean_transport_reads_environment_proxies_once_per_origin(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib3

    import watcher.heygen.transport as transport

    reads = count_proxy_reads(monkeypatch, "http://user:secret@proxy.example:3128")
    lean = transport.Transport(2)
    timeout = urllib3.Timeout(connect=5, read=5)
    for _ in range(3):
        answer = lean.send(
            "POST",
            f"{sandbox.api_url}/v1/asset",
            headers={
                **transport.BASE_HEADERS,
                "X-Api-Key": SANDBOX_KEY,
                "Content-Type": "application/json",
            },
            body=b'{"content_type": "image/png"}',
            timeout=timeout,
        )
        assert answer.status_code == 200
    assert reads == [f"{sandbox.api_url}/v1/asset"]  # once for this origin, not per request
    # The environment still decides: HeyGen's host goes through the proxy, with its
    # credentials for the proxy only (as requests sends them).
    pool, manager = lean._route("https", "api.heygen.com", "https://api.heygen.com/v1/asset")
    assert pool is None and isinstance(manager, urllib3.ProxyManager)
    assert manager.proxy is not None and manager.proxy.host == "proxy.example"
    assert manager.proxy_headers["Proxy-Authorization"].startswith("Basic ")
    lean.close()


def test_the_lean_transport_says_why_nothing_came_back(sandbox: Sandbox) -> None:
    import urllib3

    import watcher.heygen.transport as transport

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    lean = transport.Transport(1)
    with pytest.raises(transport.TransportError) as refused:
        lean.send(
            "GET",
            f"http://127.0.0.1:{port}/v1/asset",
            headers=dict(transport.BASE_HEADERS),
            timeout=urllib3.Timeout(connect=5, read=5),
        )
    # Refused: it certainly never reached a server, so it is safe to send again.
    assert (refused.value.name, refused.value.never_sent) == ("ConnectionError", True)
    lean.close()


def test_api_answers_feed_their_latency_to_the_adaptive_limit(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON requests (a slot, a completion) tell how loaded HeyGen is; a request carrying a
    file does not (its time grows with the file)."""
    client = client_for(sandbox)
    seen: list[float | None] = []
    real = client.throttle.answered

    def answered(latency: float | None, refused: bool) -> None:
        seen.append(latency)
        real(latency, refused)

    monkeypatch.setattr(client.throttle, "answered", answered)
    V1Presigned(client).upload(local_file(tmp_path / "a.png", media.png(seed=41), "image/png"))
    (slot_latency,) = seen
    assert isinstance(slot_latency, float) and slot_latency > 0
    one_request = client_for(sandbox, upload_protocol="v1-upload")
    seen_upload: list[float | None] = []
    monkeypatch.setattr(
        one_request.throttle, "answered", lambda latency, refused: seen_upload.append(latency)
    )
    make_protocol(one_request).upload(
        local_file(tmp_path / "b.png", media.png(seed=42), "image/png")
    )
    assert seen_upload == [None]


class _ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1 that records what it is asked and forwards it
    (absolute-form request targets, as clients send them to a proxy)."""

    def __init__(self) -> None:
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit

        seen: list[tuple[str, str, dict[str, str]]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _forward(self) -> None:
                seen.append((self.command, self.path, dict(self.headers)))
                target = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("proxy-authorization", "proxy-connection")
                }
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream.request(self.command, path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_proxy_from_the_environment_carries_the_uploads_with_its_own_credentials(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = _ForwardProxy()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:secret@127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        file = local_file(tmp_path / "a.png", media.png(seed=51), "image/png")
        asset = V1Presigned(client_for(sandbox)).upload(file)
    finally:
        proxy.close()
    assert sandbox.assets[asset.asset_id].sha256 == file.sha256
    (create, put) = proxy.seen
    assert (create[0], create[1]) == ("POST", f"{sandbox.api_url}/v1/asset")
    assert put[0] == "PUT" and put[1].startswith(sandbox.storage_url)
    for _, _, headers in proxy.seen:
        assert headers["Proxy-Authorization"].startswith("Basic ")
    assert create[2]["X-Api-Key"] == SANDBOX_KEY
    assert "X-Api-Key" not in put[2]
    # The proxy's credentials are for the proxy: HeyGen never sees them.
    for seen in sandbox.requests:
        assert "Proxy-Authorization" not in seen.headers
