"""A retry reads as one line per retry, naming its file and which try it is, in every log format
(a terminal, a redirected file, -v, JSON).

Two kinds of retries nest: a request is tried again a few times at once (`try N of M`), and a
file whose request still fails is tried again later (`attempt N of M`), with the quick tries
counted from one again. Both used to print `attempt 1 of 2` without the file, so one file's two
attempts, or two files' retries, read as one line printed twice.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import KEY_ENV, config_document, env_with, sidecar_of, write_config

from watcher.sandbox import Fault, Sandbox

# Each file attempt fails once, then (attempt two) fails once more before it goes through.
FAILED_REQUESTS = 3


def quick_retries(lines: list[str]) -> list[str]:
    return [line for line in lines if "trying it again in" in line]


def later_attempts(lines: list[str]) -> list[str]:
    return [line for line in lines if "will retry in" in line]


@pytest.mark.parametrize(
    "options, stderr_to",
    [(["-v"], "file"), (["--log-format", "json"], "file"), ([], "terminal")],
    ids=["verbose-redirected", "json-redirected", "terminal"],
)
def test_one_line_per_retry_naming_the_file_and_the_try(
    tmp_path: Path, drop: Path, sandbox: Sandbox, options: list[str], stderr_to: str
):
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "settle_seconds": 0.1}],
        api={"max_attempts": 2, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.1},
        retry_window_seconds=0.5,
    )
    config = write_config(tmp_path / "c.yaml", document)
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=503, count=FAILED_REQUESTS))
    path = drop / "a.png"
    path.write_bytes(media.png(seed=801))
    command = [sys.executable, "-m", "watcher", "run", "-c", str(config), *options]
    log_path = tmp_path / "daemon.log"
    if stderr_to == "file":
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(command, stderr=log_file, env=env_with(KEY_ENV))
        reader = None
    else:
        # A real terminal: the daemon's stderr is a pty, read here as a person would see it.
        controller, terminal = pty.openpty()
        process = subprocess.Popen(command, stderr=terminal, env=env_with(KEY_ENV))
        os.close(terminal)
        reader = threading.Thread(target=_copy, args=(controller, log_path), daemon=True)
        reader.start()
    try:
        wait_for(sidecar_of(path).exists, timeout=30, what="the upload after its retries")
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    if reader is not None:
        reader.join(timeout=10)
    lines = log_path.read_text(encoding="utf-8", errors="replace").replace("\r", "").splitlines()
    failed = [r for r in sandbox.requests if r.path == "/v1/asset" and r.status == 503]
    assert len(failed) == FAILED_REQUESTS
    retries = quick_retries(lines)
    # A quick retry follows each failed request but the last of an attempt: two here.
    assert len(retries) == 2, "\n".join(lines)
    assert all("(try 2 of 2)" in line and str(path) in line for line in retries), retries
    (later,) = later_attempts(lines)
    assert "(attempt 2 of 2)" in later and str(path) in later
    assert "attempt 1 of 2" not in "\n".join(lines)
    # In order: attempt one's quick retry, the file's second attempt, that attempt's quick retry.
    order = [line for line in lines if line in retries or line == later]
    assert order == [retries[0], later, retries[1]]


def _copy(controller: int, destination: Path) -> None:
    with open(destination, "wb") as out:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the daemon closed its end
                break
            if not chunk:
                break
            out.write(chunk)
    os.close(controller)
