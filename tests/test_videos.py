"""Video templates end to end against the sandbox's fast status progression."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import media
import pytest
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    cli,
    config_document,
    make_config,
    read_sidecar,
    running,
    sidecar_of,
    wait_sidecar,
    write_config,
)

from watcher.config import ConfigError
from watcher.config.templates import RenderError, render
from watcher.intake.sniff import sniff_file
from watcher.pipeline.video_fetch import download_name
from watcher.sandbox import Fault, Sandbox

FAST = {"initial_delay_seconds": 0.05, "poll_interval_seconds": 0.05}
BACKGROUND_BODY = {
    "video_inputs": [
        {
            "character": {
                "type": "avatar",
                "avatar_id": "josh_lite3_20230714",
                "avatar_style": "normal",
            },
            "voice": {"type": "text", "input_text": "${script}", "voice_id": "v-1"},
            "background": {"type": "image", "url": "${asset_url}"},
        }
    ],
    "dimension": {"width": 1280, "height": 720},
    "title": "${stem}",
}


def templated(sandbox: Sandbox, tmp_path: Path, drop: Path, template: dict[str, Any], **top: Any):
    return make_config(
        sandbox,
        tmp_path,
        [{"path": str(drop), "settle_seconds": 0.1, "template": "main"}],
        templates={"main": {**FAST, **template}},
        **top,
    )


def v3_image_body(voice_id: str = "v") -> dict[str, Any]:
    """A /v3/videos body (a union discriminated by `type`) for the dropped image."""
    return {
        "type": "image",
        "image": {"type": "asset_id", "asset_id": "${asset_id}"},
        "script": "Hi",
        "voice_id": voice_id,
    }


def wait_video(path: Path, statuses: tuple[str, ...], timeout: float = 15) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        try:
            document = read_sidecar(path)
        except (OSError, ValueError):
            return None
        video = document.get("video")
        return document if video and video["status"] in statuses else None

    return wait_for(done, timeout, f"video of {path.name} to be {statuses}")  # type: ignore


def generate_requests(sandbox: Sandbox) -> list:
    return [
        r
        for r in sandbox.requests
        if (r.method == "POST" and "generate" in r.path) or r.path == "/v3/videos"
    ]


# -- the full flow ------------------------------------------------------------------------------
def test_full_flow_waits_and_downloads(tmp_path: Path, drop: Path, sandbox: Sandbox):
    out = tmp_path / "videos"
    config = templated(sandbox, tmp_path, drop, {"body": BACKGROUND_BODY, "download_to": str(out)})
    with running(config):
        (drop / "office.txt").write_text("  Welcome to the new office!\n", encoding="utf-8")
        (drop / "office.png").write_bytes(media.png(seed=1))
        document = wait_video(drop / "office.png", ("completed",))
        wait_for(
            lambda: read_sidecar(drop / "office.png")["video"]["downloaded_to"], what="the download"
        )
    document = read_sidecar(drop / "office.png")
    video = document["video"]
    assert document["status"] == "uploaded" and document["asset_id"]
    assert video["template"] == "main" and video["endpoint"] == "/v2/video/generate"
    assert video["video_url"] and video["thumbnail_url"] and video["duration"]
    assert video["submitted_at"].endswith("Z") and video["completed_at"].endswith("Z")
    assert video["error"] is None
    saved = Path(video["downloaded_to"])
    assert saved == out / f"office.{video['video_id']}.mp4"
    assert sniff_file(saved) == "video/mp4"
    (generated,) = sandbox.videos.values()
    voice = generated.body["video_inputs"][0]["voice"]
    assert voice["input_text"] == "Welcome to the new office!"
    assert generated.body["video_inputs"][0]["background"]["url"] == document["url"]
    assert generated.body["title"] == "office"
    assert not sidecar_of(drop / "office.txt").exists()  # the script is not a rejected file


def test_v2_template_endpoint_with_an_image_variable(tmp_path: Path, drop: Path, sandbox: Sandbox):
    body = {
        "title": "Card for ${filename}",
        "variables": {
            "photo": {
                "name": "photo",
                "type": "image",
                "properties": {"url": "${asset_url}", "asset_id": "${asset_id}", "fit": "cover"},
            },
            "caption": {
                "name": "caption",
                "type": "text",
                "properties": {"content": "Price: $$${env.PRICE}"},
            },
        },
    }
    os.environ["PRICE"] = "20"
    try:
        config = templated(
            sandbox, tmp_path, drop, {"endpoint": "/v2/template/tpl_42/generate", "body": body}
        )
        with running(config):
            (drop / "card.jpg").write_bytes(media.jpeg(b"card"))
            document = wait_video(drop / "card.jpg", ("completed",))
    finally:
        del os.environ["PRICE"]
    (generated,) = sandbox.videos.values()
    assert generated.endpoint.startswith("/v2/template/tpl_42/generate")
    photo = generated.body["variables"]["photo"]["properties"]
    assert photo["asset_id"] == document["asset_id"]
    assert generated.body["variables"]["caption"]["properties"]["content"] == "Price: $20"
    assert generated.body["title"] == "Card for card.jpg"
    assert any(r.path.startswith("/v2/videos/") for r in sandbox.requests)


def test_v3_videos_endpoint_polls_v3_status(tmp_path: Path, drop: Path, sandbox: Sandbox):
    body = v3_image_body("v-2")
    config = templated(
        sandbox,
        tmp_path,
        drop,
        {"endpoint": "/v3/videos", "body": body},
        api={"upload_protocol": "v3-direct"},
    )
    with running(config):
        (drop / "face.png").write_bytes(media.png(seed=3))
        wait_video(drop / "face.png", ("completed",))
    assert any(r.path.startswith("/v3/videos/") for r in sandbox.requests)


def test_a_failed_video_says_why(tmp_path: Path, drop: Path, sandbox: Sandbox):
    sandbox.queue_video_outcome(
        "failed", failure_code="AVATAR_NOT_FOUND", failure_message="the avatar does not exist"
    )
    body = {**BACKGROUND_BODY, "title": "x"}
    body["video_inputs"] = [
        {
            **BACKGROUND_BODY["video_inputs"][0],
            "voice": {"type": "text", "input_text": "Hi", "voice_id": "v"},
        }
    ]
    config = templated(sandbox, tmp_path, drop, {"body": body})
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=4))
        document = wait_video(drop / "a.png", ("failed",))
    assert "AVATAR_NOT_FOUND" in document["video"]["error"]
    assert "the avatar does not exist" in document["video"]["error"]
    assert document["status"] == "uploaded"  # the asset part stays as it was


def test_a_video_that_never_finishes_times_out(tmp_path: Path, drop: Path, sandbox: Sandbox):
    sandbox.queue_video_outcome("stuck")
    config = templated(
        sandbox,
        tmp_path,
        drop,
        {
            "body": v3_image_body("v"),
            "endpoint": "/v3/videos",
            "timeout_minutes": 0.01,
        },
        api={"upload_protocol": "v3-direct"},
    )
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=5))
        document = wait_video(drop / "a.png", ("timed_out",))
    assert "0.01 minutes" in document["video"]["error"]


def test_wait_false_submits_and_stops_there(tmp_path: Path, drop: Path, sandbox: Sandbox):
    body = v3_image_body("v")
    config = templated(
        sandbox,
        tmp_path,
        drop,
        {"endpoint": "/v3/videos", "body": body, "wait": False},
        api={"upload_protocol": "v3-direct"},
    )
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=6))
        document = wait_video(drop / "a.png", ("submitted",))
        daemon.wait_until_idle(include_videos=True)
    assert document["video"]["video_id"]
    assert not any(r.path.startswith("/v3/videos/") for r in sandbox.requests)


# -- restarts and lost answers ------------------------------------------------------------------
def test_a_restart_while_waiting_resumes_polling_without_a_second_generate(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = templated(
        sandbox,
        tmp_path,
        drop,
        {
            "body": v3_image_body("v"),
            "endpoint": "/v3/videos",
            "initial_delay_seconds": 0.5,
        },
        api={"upload_protocol": "v3-direct"},
    )
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=7))
        wait_video(drop / "a.png", ("submitted",))
    assert len(sandbox.videos) == 1
    with running(config):
        document = wait_video(drop / "a.png", ("completed",))
    assert len(sandbox.videos) == 1
    assert len(generate_requests(sandbox)) == 1
    assert document["video"]["video_id"] == next(iter(sandbox.videos))


def test_a_lost_generate_answer_is_unknown_until_retried_on_purpose(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.inject(Fault(method="POST", path_prefix="/v3/videos", drop_response=True))
    template = {
        "endpoint": "/v3/videos",
        "body": v3_image_body("v"),
    }
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "settle_seconds": 0.1, "template": "main"}],
        templates={"main": {**FAST, **template}},
        api={"upload_protocol": "v3-direct"},
    )
    config = make_config(
        sandbox,
        tmp_path,
        document["folders"],
        templates=document["templates"],
        api={"upload_protocol": "v3-direct"},
    )
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=8))
        sidecar = wait_video(drop / "a.png", ("unknown",))
        daemon.wait_until_idle()
    assert "heygen-watcher retry" in sidecar["video"]["error"]
    assert len(sandbox.videos) == 1  # it was created, but we could not know: not re-sent
    assert len(generate_requests(sandbox)) == 1
    config_path = write_config(tmp_path / "c.yaml", document)
    result = cli(
        "retry", "-c", str(config_path), str(drop / "a.png"), env={"HEYGEN_API_KEY": SANDBOX_KEY}
    )
    assert result.returncode == 0, result.stderr
    assert read_sidecar(drop / "a.png")["video"]["status"] == "completed"
    assert len(sandbox.videos) == 2


def test_a_missing_script_fails_the_video_step(tmp_path: Path, drop: Path, sandbox: Sandbox):
    config = templated(
        sandbox, tmp_path, drop, {"body": BACKGROUND_BODY, "script_wait_seconds": 0.3}
    )
    with running(config):
        (drop / "lonely.png").write_bytes(media.png(seed=9))
        document = wait_video(drop / "lonely.png", ("failed",))
    assert "lonely.txt did not appear" in document["video"]["error"]
    assert document["status"] == "uploaded"
    assert sandbox.videos == {}


def test_a_script_arriving_late_is_waited_for(tmp_path: Path, drop: Path, sandbox: Sandbox):
    config = templated(
        sandbox, tmp_path, drop, {"body": BACKGROUND_BODY, "script_wait_seconds": 10}
    )
    with running(config) as daemon:
        (drop / "late.png").write_bytes(media.png(seed=10))
        wait_for(
            lambda: (
                (v := daemon.journal.video(str(drop / "late.png"))) and v.state == "waiting_script"
            ),
            what="the wait for the script",
        )
        (drop / "late.txt").write_text("Here I am", encoding="utf-8")
        wait_video(drop / "late.png", ("completed",))
    (generated,) = sandbox.videos.values()
    assert generated.body["video_inputs"][0]["voice"]["input_text"] == "Here I am"


def test_402_pauses_videos_while_uploads_go_on(tmp_path: Path, drop: Path, sandbox: Sandbox):
    sandbox.inject(Fault(method="POST", path_prefix="/v3/videos", status=402))
    template = {
        "endpoint": "/v3/videos",
        "body": v3_image_body("v"),
    }
    config = templated(
        sandbox,
        tmp_path,
        drop,
        template,
        quota_pause_seconds=1.0,
        api={"upload_protocol": "v3-direct"},
    )
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=11))
        wait_for(lambda: daemon.videos.pause.active(), what="the video pause")
        (drop / "b.png").write_bytes(media.png(seed=12))
        wait_sidecar(drop / "b.png")  # uploads go on during the pause
        assert len(sandbox.videos) == 0
        wait_video(drop / "a.png", ("completed",))
        wait_video(drop / "b.png", ("completed",))
    assert len(sandbox.videos) == 2


# -- HeyGen's documented contract ---------------------------------------------------------------
V3 = {"endpoint": "/v3/videos", "body": v3_image_body()}
V3_DIRECT = {"upload_protocol": "v3-direct"}


def test_a_generate_answered_502_after_taking_effect_is_unknown_not_resent(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.inject(Fault(method="POST", path_prefix="/v3/videos", status=502, after_effect=True))
    config = templated(sandbox, tmp_path, drop, V3, api=V3_DIRECT)
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=21))
        document = wait_video(drop / "a.png", ("unknown",))
        daemon.wait_until_idle(include_videos=True)
    assert "heygen-watcher retry" in document["video"]["error"]
    assert len(sandbox.videos) == 1  # created once, billed once
    assert len(generate_requests(sandbox)) == 1


def test_waiting_is_a_normal_first_status(tmp_path: Path, drop: Path, sandbox: Sandbox):
    sandbox.video_pending_seconds = 1.5  # long enough for a poll to see it, even on a busy box
    config = templated(sandbox, tmp_path, drop, V3, api=V3_DIRECT)
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=22))
        wait_video(drop / "a.png", ("waiting",))
        document = wait_video(drop / "a.png", ("completed",))
    assert document["video"]["error"] is None
    statuses = [r for r in sandbox.requests if r.path.startswith("/v3/videos/")]
    assert len(statuses) >= 2


def test_the_v3_template_endpoint_is_read_from_data_id(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    body = {
        "variables": {
            "photo": {"name": "photo", "type": "image", "properties": {"asset_id": "${asset_id}"}}
        }
    }
    config = templated(sandbox, tmp_path, drop, {"endpoint": "/v3/templates/tpl_7", "body": body})
    with running(config):
        (drop / "card.png").write_bytes(media.png(seed=23))
        document = wait_video(drop / "card.png", ("completed",))
    (video_id,) = sandbox.videos
    assert document["video"]["video_id"] == video_id
    assert any(r.path == f"/v3/videos/{video_id}" for r in sandbox.requests)


def test_a_403_fails_the_video_at_once_without_resubmitting(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.inject(Fault(method="POST", path_prefix="/v3/videos", status=403))
    config = templated(sandbox, tmp_path, drop, V3, api=V3_DIRECT)
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=24))
        document = wait_video(drop / "a.png", ("failed",))
        daemon.wait_until_idle(include_videos=True)
        assert not daemon.pipeline.auth_pause.active
    assert "403" in document["video"]["error"]
    assert len(generate_requests(sandbox)) == 1


def test_a_processing_asset_is_waited_for_before_the_video(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.asset_processing_seconds = 0.8
    config = templated(sandbox, tmp_path, drop, V3, api=V3_DIRECT)
    with running(config) as daemon:
        (drop / "a.png").write_bytes(media.png(seed=25))
        wait_for(
            lambda: (v := daemon.journal.video(str(drop / "a.png"))) and v.state == "waiting_asset",
            what="the wait for the asset",
        )
        document = wait_video(drop / "a.png", ("completed",))
    completes = [r for r in sandbox.requests if r.path.endswith("/complete")]
    assert len(completes) >= 2  # asked again: completion is idempotent
    assert [r.status for r in generate_requests(sandbox)] == [201]  # never refused
    assert document["video"]["error"] is None


def test_a_video_refused_as_asset_not_available_waits_and_tries_again(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    body = '{"error": {"code": "asset_not_available", "message": "may still be processing"}}'
    sandbox.inject(Fault(method="POST", path_prefix="/v3/videos", status=400, body=body))
    config = templated(sandbox, tmp_path, drop, V3, api=V3_DIRECT)
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=26))
        wait_video(drop / "a.png", ("completed",))
    assert [r.status for r in generate_requests(sandbox)] == [400, 201]
    assert len(sandbox.videos) == 1


def test_an_expired_video_url_is_refreshed_from_the_status_endpoint(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    out = tmp_path / "videos"
    sandbox.video_url_ttl_seconds = 2.0
    # The first download is held up past the URL's lifetime: storage then refuses it (403).
    sandbox.inject(Fault(method="GET", path_prefix="/videos/", server="storage", delay_seconds=2.5))
    config = templated(sandbox, tmp_path, drop, {**V3, "download_to": str(out)}, api=V3_DIRECT)
    with running(config):
        (drop / "a.png").write_bytes(media.png(seed=27))
        wait_video(drop / "a.png", ("completed",))
        wait_for(
            lambda: read_sidecar(drop / "a.png")["video"]["downloaded_to"],
            timeout=20,
            what="the download",
        )
    downloads = [r.status for r in sandbox.requests if r.path.startswith("/videos/")]
    assert downloads == [403, 200]
    assert sniff_file(Path(read_sidecar(drop / "a.png")["video"]["downloaded_to"])) == "video/mp4"


def test_a_v1_failure_reason_object_reaches_the_sidecar(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    sandbox.queue_video_outcome("failed", failure_code="E7", failure_message="bad script")
    template = {
        "body": {**BACKGROUND_BODY, "title": "x"},
        "status_endpoint": "/v1/video_status.get?video_id={video_id}",
        "script_wait_seconds": 5,
    }
    config = templated(sandbox, tmp_path, drop, template)
    with running(config):
        (drop / "a.txt").write_text("Hi", encoding="utf-8")
        (drop / "a.png").write_bytes(media.png(seed=28))
        document = wait_video(drop / "a.png", ("failed",))
    assert document["video"]["error"] == "E7: bad script"


# -- configuration and rendering ----------------------------------------------------------------
def test_check_config_names_an_unknown_placeholder_and_its_template(
    tmp_path: Path, sandbox: Sandbox
):
    drop = tmp_path / "drop"
    drop.mkdir()
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "template": "promo"}],
        templates={"promo": {"body": {"title": "${titel}", "x": ["${asset_id}"]}}},
    )
    result = cli("check-config", "-c", str(write_config(tmp_path / "c.yaml", document)))
    assert result.returncode == 2
    assert "templates.promo.body" in result.stderr
    assert "template 'promo'" in result.stderr and "${titel}" in result.stderr


def test_config_refuses_unknown_template_names_and_urls_as_endpoints(
    tmp_path: Path, sandbox: Sandbox
):
    with pytest.raises(ConfigError) as caught:
        make_config(
            sandbox,
            tmp_path,
            [{"path": str(tmp_path), "template": "nope"}],
            templates={"other": {"endpoint": "https://evil.example/steal", "body": {}}},
        )
    text = str(caught.value)
    assert "folders[0].template: no template named 'nope'" in text
    assert "templates.other.endpoint: must be an API path" in text


def test_rendering_is_data_substitution_only():
    values = {"asset_id": "a1", "size": 42, "stem": "x"}
    body = {
        "n": "${size}",
        "s": "size=${size}",
        "d": "$$5 and $HOME",
        "l": ["${stem}"],
        "code": "${__import__('os')}",
    }
    with pytest.raises(RenderError, match="unknown placeholder"):
        render(body, values, environ={})
    del body["code"]
    assert render(body, values, environ={}) == {
        "n": 42,
        "s": "size=42",
        "d": "$5 and $HOME",
        "l": ["x"],
    }
    with pytest.raises(RenderError, match="environment variable MISSING is not set"):
        render({"k": "${env.MISSING}"}, values, environ={})


def test_download_names_stay_inside_the_folder():
    assert download_name("clip", "abc-123_x") == "clip.abc-123_x.mp4"
    name = download_name("clip", "../../etc/passwd")
    assert "/" not in name and name.startswith("clip.")
    assert download_name("..", "x/y") == "video.x_y.mp4"
