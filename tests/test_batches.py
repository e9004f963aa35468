"""v3 batch uploads end to end: a real daemon, a real folder, the sandbox's strict read model.

`GET /v3/assets/batches/{id}` pages its items (a default page smaller than a batch), names each
item's id `video_id` (null until the item exists) and gives a failed item an `error` object;
these tests fail for a client that reads one page, looks items up by `asset_id`, or waits for
the per-file retry window when a batch's outcome cannot be read.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    config_document,
    make_config,
    read_sidecar,
    running,
    start_cli,
    stop_cli,
    wait_sidecar,
    write_config,
)

from watcher.sandbox import Fault, Sandbox
from watcher.service.daemon import Daemon

BATCHES = "/v3/assets/direct-uploads/batches"
COMPLETE_BATCH = "/v3/assets/complete/batches"
READ_BATCH = "/v3/assets/batches/"


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


@pytest.fixture
def v3_daemon(tmp_path: Path, drop: Path, sandbox: Sandbox) -> Iterator[Daemon]:
    config = make_config(
        sandbox,
        tmp_path,
        [{"path": str(drop), "settle_seconds": 0.1}],
        api={"upload_protocol": "v3-direct", "concurrency": 4},
    )
    with running(config) as daemon:
        batcher = daemon.pipeline.batcher
        assert batcher is not None
        # Long enough that files renamed in together always share one batch.
        batcher.gather_seconds = 0.5
        yield daemon


def drop_together(staging: Path, drop: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every file aside, then rename them all into the folder at once."""
    for name, data in files.items():
        (staging / name).write_bytes(data)
    for name in files:
        os.rename(staging / name, drop / name)
    return [drop / name for name in files]


def assert_each_uploaded_once(sandbox: Sandbox, paths: list[Path]) -> None:
    """Every file is one asset at the sandbox, PUT once, and its sidecar names that asset."""
    assets = sandbox.assets
    for path in paths:
        document = read_sidecar(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        matching = [asset for asset in assets.values() if asset.sha256 == digest]
        assert len(matching) == 1, path.name
        assert matching[0].put_count == 1, path.name
        assert document["status"] == "uploaded", document
        assert document["asset_id"] == matching[0].asset_id, path.name
    assert len({read_sidecar(path)["asset_id"] for path in paths}) == len(paths)


def single_completions(sandbox: Sandbox) -> list:
    """`POST /v3/assets/{id}/complete`: one file completed on its own, outside its batch."""
    return [r for r in sandbox.requests if r.method == "POST" and r.path.endswith("/complete")]


def batch_requests(sandbox: Sandbox, method: str, prefix: str) -> list:
    return [r for r in sandbox.requests if r.method == method and r.path.startswith(prefix)]


def test_a_burst_bigger_than_one_page_is_read_page_by_page(
    v3_daemon: Daemon, sandbox: Sandbox, drop: Path, staging: Path
):
    sandbox.batch_page_size = 3
    files = {f"p{i:02d}.png": media.png(seed=i) for i in range(12)}
    paths = drop_together(staging, drop, files)
    for path in paths:
        wait_sidecar(path, timeout=30, status="uploaded")
    assert_each_uploaded_once(sandbox, paths)
    assert len(batch_requests(sandbox, "POST", BATCHES)) == 1
    reads = batch_requests(sandbox, "GET", READ_BATCH)
    assert any("token=" in r.query for r in reads), "the second page was never asked for"
    # One slot request and one completion for the whole burst.
    assert not [r for r in sandbox.requests if r.path == "/v3/assets/direct-uploads"]
    assert len(batch_requests(sandbox, "POST", COMPLETE_BATCH)) == 1
    assert not single_completions(sandbox)


def test_one_item_refused_inside_a_batch_while_the_others_succeed(
    v3_daemon: Daemon, sandbox: Sandbox, drop: Path, staging: Path
):
    sandbox.fail_ingestion("bad.png", "invalid_media", "the image cannot be decoded")
    files = {
        "bad.png": media.png(seed=50),
        **{f"ok{i}.png": media.png(seed=60 + i) for i in range(3)},
    }
    paths = drop_together(staging, drop, files)
    refused = wait_sidecar(drop / "bad.png", timeout=30, status="failed")
    assert "invalid_media" in refused["error"]
    assert "the image cannot be decoded" in refused["error"]
    good = [path for path in paths if path.name != "bad.png"]
    for path in good:
        wait_sidecar(path, timeout=30, status="uploaded")
    assert_each_uploaded_once(sandbox, good)
    assert len(batch_requests(sandbox, "POST", BATCHES)) == 1


def test_a_batch_still_processing_is_polled_until_it_completes(
    v3_daemon: Daemon, sandbox: Sandbox, drop: Path, staging: Path
):
    sandbox.batch_processing_seconds = 0.6
    files = {f"s{i}.png": media.png(seed=70 + i) for i in range(4)}
    paths = drop_together(staging, drop, files)
    for path in paths:
        wait_sidecar(path, timeout=30, status="uploaded")
    assert_each_uploaded_once(sandbox, paths)
    # The items stayed `processing` (with their ids) for several looks before completing.
    assert len(batch_requests(sandbox, "GET", READ_BATCH)) >= 3
    assert not single_completions(sandbox)


def test_an_unreadable_batch_outcome_completes_each_file_on_its_own(
    v3_daemon: Daemon, sandbox: Sandbox, drop: Path, staging: Path
):
    # The batch never reports an end: after the poll deadline each file completes alone
    # (idempotent), at once, instead of waiting out the per-file retry window.
    sandbox.batch_processing_seconds = 3600
    batcher = v3_daemon.pipeline.batcher
    assert batcher is not None
    batcher.poll_give_up_seconds = 0.3
    files = {f"u{i}.png": media.png(seed=80 + i) for i in range(3)}
    paths = drop_together(staging, drop, files)
    for path in paths:
        wait_sidecar(path, timeout=30, status="uploaded")
    assert_each_uploaded_once(sandbox, paths)
    assert len(single_completions(sandbox)) == len(paths)


def test_a_batch_read_that_fails_completes_each_file_on_its_own(
    v3_daemon: Daemon, sandbox: Sandbox, drop: Path, staging: Path
):
    sandbox.inject(Fault(method="GET", path_prefix=READ_BATCH, status=404, count=100))
    files = {f"g{i}.png": media.png(seed=90 + i) for i in range(3)}
    paths = drop_together(staging, drop, files)
    for path in paths:
        wait_sidecar(path, timeout=30, status="uploaded")
    assert_each_uploaded_once(sandbox, paths)


def test_kill_9_between_the_puts_and_the_batch_completion(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "settle_seconds": 0.1}],
        api={"upload_protocol": "v3-direct", "concurrency": 4},
    )
    config = write_config(tmp_path / "config.yaml", document)
    sandbox.inject(Fault(method="POST", path_prefix=COMPLETE_BATCH, delay_seconds=30))
    paths = [drop / f"k{i}.png" for i in range(8)]
    for index, path in enumerate(paths):
        path.write_bytes(media.png(seed=100 + index))
    env = {"HEYGEN_API_KEY": SANDBOX_KEY}
    process = start_cli("run", "-c", str(config), env=env)
    try:
        wait_for(
            lambda: batch_requests(sandbox, "POST", COMPLETE_BATCH),
            timeout=30,
            what="a batch completion, after its PUTs",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
    sandbox.clear_faults()
    restarted = start_cli("run", "-c", str(config), env=env)
    try:
        for path in paths:
            wait_sidecar(path, timeout=30, status="uploaded")
        code, _, err = stop_cli(restarted)
    finally:
        restarted.kill()
    assert code == 0, err
    assert_each_uploaded_once(sandbox, paths)
