"""The pipeline, built in one place: the stages of a file's way and who they talk to.

`build_pipeline` wires them once (no attribute is set afterwards): the worker pool runs
`Taker.process` for every settled path; the taker decides a file's fate and starts its upload
(or hands it to the v3 batcher); the uploader sends it; the outcome policy decides what a
failure means; the recorder writes the sidecar and marks it uploaded; the video runner moves
templated files' videos on. Every step commits to the journal before the next one starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher.config import FolderConfig
from watcher.config.live import LiveConfig
from watcher.convert.converter import Converter
from watcher.heygen.client import HeyGenClient
from watcher.heygen.retry import requests_for
from watcher.heygen.uploadfile import UploadProtocol
from watcher.heygen.v3direct import V3Direct
from watcher.pipeline.batching import V3Batcher
from watcher.pipeline.conversion import WORK_DIR as CONVERT_WORK_DIR
from watcher.pipeline.conversion import ConvertStep
from watcher.pipeline.notices import Notices
from watcher.pipeline.outcome import AuthPause, OutcomePolicy
from watcher.pipeline.record import Recorder, Sidecars
from watcher.pipeline.take import Taker
from watcher.pipeline.truth import SidecarKeeper
from watcher.pipeline.upload import Uploader
from watcher.pipeline.videos import VideoRunner, VideoStage
from watcher.pipeline.workpool import Work, WorkerProgress, WorkPool, unwatched
from watcher.state.journal_api import Journal

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Pipeline:
    pool: WorkPool
    taker: Taker
    uploader: Uploader
    outcome: OutcomePolicy
    recorder: Recorder
    sidecars: Sidecars
    videos: VideoStage
    video_runner: VideoRunner
    batcher: V3Batcher | None
    auth_pause: AuthPause
    keeper: SidecarKeeper
    converting: ConvertStep


def build_pipeline(
    live: LiveConfig,
    journal: Journal,
    client: HeyGenClient,
    protocol: UploadProtocol,
    *,
    renotice: Callable[[Path, FolderConfig], None],
    on_event: EventSink = lambda kind, details: None,
    on_retry_scheduled: Callable[[], None] = lambda: None,
    progress: WorkerProgress | None = None,
    auth_pause: AuthPause | None = None,
    on_notices_written: Callable[[], None] = lambda: None,
) -> Pipeline:
    """Every stage, built once with its collaborators handed in. ``auth_pause``: the 401's
    pause, connected to the fleet's by the service (else this process's own);
    ``on_notices_written``: wakes whoever delivers the outbox."""
    config = live.current
    auth_pause = auth_pause or AuthPause()
    notices = Notices(live, on_notices_written)

    # The pool and the stages need each other; these two are bound to stages built below and
    # only called once the pool has started.
    def process(work: Work) -> None:
        with requests_for(str(work.path)):
            taker.process(work)

    def unexpected(path: Path, error: Exception) -> None:
        outcome.unexpected(path, error)

    pool = WorkPool(
        config.api.concurrency,
        process,
        renotice,
        progress or unwatched(),
        on_unexpected=unexpected,
        upload_slot=client.throttle.upload_slot,
        on_finished=lambda path: journal.release(str(path)),
    )
    sidecars = Sidecars(journal, live, on_event, on_deferred=on_retry_scheduled)
    videos = VideoStage(live, journal, client, rewrite_sidecar=sidecars.rewrite, on_event=on_event)
    videos.notices = notices
    video_runner = VideoRunner(videos, pool.run_task, on_retry_scheduled)
    outcome = OutcomePolicy(
        journal,
        live,
        sidecars,
        auth_pause,
        renotice,
        on_event,
        on_retry_scheduled,
        reachability=client.reachability,
        probe=client.probe,
        key_origin=lambda: client.key_origin,
        notices=notices,
    )
    videos.on_outage = outcome.unreachable
    recorder = Recorder(
        journal, live, sidecars, videos, video_runner.run_step, outcome.retry_recording, notices
    )
    converting = ConvertStep(
        journal,
        live,
        Converter(config.ffmpeg, config.convert_timeout_seconds, config.convert_concurrency),
        config.state_dir / CONVERT_WORK_DIR,
        on_event,
        checksum_first=protocol.needs_checksum,
    )
    uploader = Uploader(
        journal, live, protocol, auth_pause, outcome, recorder, on_event, converting
    )
    batcher = (
        V3Batcher(journal, pool, protocol, uploader, outcome, auth_pause)
        if isinstance(protocol, V3Direct)
        else None
    )

    def hand_to_batcher(path: Path) -> None:
        if batcher is not None:
            pool.hand_off(path)
            batcher.enqueue(str(path))

    taker = Taker(
        journal,
        live,
        sidecars,
        uploader,
        outcome,
        checksum_first=protocol.needs_checksum,
        hand_to_batcher=hand_to_batcher if batcher is not None else None,
        renotice=renotice,
        on_event=on_event,
        converting=converting,
        notices=notices,
    )
    return Pipeline(
        pool=pool,
        taker=taker,
        uploader=uploader,
        outcome=outcome,
        recorder=recorder,
        sidecars=sidecars,
        videos=videos,
        video_runner=video_runner,
        batcher=batcher,
        auth_pause=auth_pause,
        keeper=SidecarKeeper(journal, sidecars),
        converting=converting,
    )
