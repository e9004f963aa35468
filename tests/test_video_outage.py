"""Video status polling during an outage: it pauses with the uploads (no polling of a dead API
on its own interval), loses no video, and resumes as soon as a probe is answered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import make_config, read_sidecar, running, wait_sidecar
from test_videos import BACKGROUND_BODY, wait_video

from watcher.config import Config
from watcher.sandbox import Fault, Sandbox

# Where the template's (v2) video status is read.
STATUS_PATH = "/v2/videos/"
PROBE = {"probe_base_seconds": 0.1, "probe_max_seconds": 0.3}


@pytest.fixture
def slow_videos(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox whose videos stay `processing` until a test lets them finish."""
    with Sandbox(
        api_key=SANDBOX_KEY,
        data_dir=tmp_path / "sandbox-data",
        video_pending_seconds=0.0,
        video_processing_seconds=3600,
    ) as server:
        yield server


def status_polls(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.requests if r.path.startswith(STATUS_PATH))


def the_api_down(sandbox: Sandbox) -> None:
    """Every API request answers 503 (a proxy in front of a dead API): unlike a refused
    connection, the sandbox still counts what is asked of it."""
    sandbox.inject(Fault(server="api", status=503, for_seconds=3600))


def templated_folder(
    sandbox: Sandbox, tmp_path: Path, drop: Path, poll_interval: float, **template: object
) -> tuple[Config, Path]:
    """A folder whose files each make a video (the script beside them), and the first file's
    path (its script already written)."""
    template = {
        "body": BACKGROUND_BODY,
        "initial_delay_seconds": 0.05,
        "poll_interval_seconds": poll_interval,
        **template,
    }
    config = make_config(
        sandbox,
        tmp_path,
        [{"path": str(drop), "settle_seconds": 0.1, "template": "main"}],
        templates={"main": template},
        api=PROBE,
    )
    (drop / "a.txt").write_text("Hello\n", encoding="utf-8")
    return config, drop / "a.png"


def test_polling_pauses_during_an_outage_and_resumes_when_a_probe_is_answered(
    tmp_path: Path, drop: Path, slow_videos: Sandbox
):
    sandbox = slow_videos
    poll_interval = 0.05
    config, path = templated_folder(sandbox, tmp_path, drop, poll_interval)
    with running(config) as daemon:
        path.write_bytes(media.png(seed=501))
        wait_video(path, ("processing",))
        the_api_down(sandbox)
        wait_for(lambda: daemon.client.reachability.down, what="the outage to be declared")
        polls = status_polls(sandbox)
        probes_before = daemon.client.reachability.outage.probes  # type: ignore[union-attr]
        # Forty poll intervals: polling on its own interval would ask about forty times.
        time.sleep(40 * poll_interval)
        wait_for(
            lambda: daemon.client.reachability.outage.probes > probes_before,  # type: ignore[union-attr]
            what="a probe during the outage",
        )
        assert status_polls(sandbox) - polls <= 1
        assert read_sidecar(path)["video"]["status"] == "processing"  # not lost, not failed
        sandbox.video_processing_seconds = 0.0
        sandbox.clear_faults()
        wait_video(path, ("completed",))


def test_a_video_due_during_an_outage_is_polled_as_soon_as_the_api_answers(
    tmp_path: Path, drop: Path, slow_videos: Sandbox
):
    """A long poll interval: after the outage the video is looked at when the probe is
    answered, not an interval after the failed poll."""
    sandbox = slow_videos
    out = tmp_path / "videos"
    config, path = templated_folder(sandbox, tmp_path, drop, 3600, download_to=str(out))
    # The status reads and the probe fail (503) before the first poll; uploads still work.
    sandbox.inject(Fault(server="api", path_prefix=STATUS_PATH, status=503, for_seconds=3600))
    sandbox.inject(
        Fault(server="api", path_prefix="/v3/assets/statuses", status=503, for_seconds=3600)
    )
    with running(config) as daemon:
        path.write_bytes(media.png(seed=502))
        wait_sidecar(path, status="uploaded")
        wait_for(lambda: daemon.client.reachability.down, what="the outage to be declared")
        assert read_sidecar(path)["video"]["status"] == "submitted"
        sandbox.video_processing_seconds = 0.0
        sandbox.clear_faults()
        document = wait_video(path, ("completed",), timeout=30)
        wait_for(lambda: read_sidecar(path)["video"]["downloaded_to"], what="the download")
    assert document["video"]["error"] is None
    assert len(list(out.iterdir())) == 1


def test_a_download_during_a_storage_outage_spends_no_attempt_and_is_saved_after(
    tmp_path: Path, drop: Path, slow_videos: Sandbox
):
    sandbox = slow_videos
    out = tmp_path / "videos"
    config, path = templated_folder(sandbox, tmp_path, drop, 0.05, download_to=str(out))
    with running(config) as daemon:
        path.write_bytes(media.png(seed=503))
        wait_video(path, ("processing",))
        # The video is done, but HeyGen's storage answers 503 to everything (probes too).
        sandbox.inject(Fault(server="storage", status=503, for_seconds=3600))
        sandbox.video_processing_seconds = 0.0
        wait_for(lambda: daemon.client.reachability.down, what="the storage outage declared")
        video = daemon.journal.video(str(path))
        assert video is not None and video.state == "downloading"
        assert video.attempts == 0  # an outage spends none of the download's attempts
        sandbox.clear_faults()
        wait_for(
            lambda: read_sidecar(path)["video"]["downloaded_to"],
            timeout=30,
            what="the video saved once storage answers",
        )
    assert len(list(out.iterdir())) == 1
