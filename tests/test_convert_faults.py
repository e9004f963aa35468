"""Conversion when things go wrong: bad files, a slow converter, no converter, the dry run,
and `kill -9` before, during and after a conversion's upload: each file is converted again
only while no upload is recorded, uploaded once, and nothing is left in the state directory."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import media
import pytest
import requests
from conftest import SANDBOX_KEY, wait_for
from convert_media import H264_AAC, ffmpeg, heic, picture, tone, video
from daemon_helpers import (
    KEY_ENV,
    cli,
    config_document,
    make_config,
    read_sidecar,
    scan_once,
    start_cli,
    stop_cli,
    wait_sidecar,
    write_config,
)
from smalldisk import small_tmpfs

from watcher.sandbox import Fault, Sandbox

REAL_FFMPEG = "/usr/bin/ffmpeg"


def converting(drop: Path, **folder: object) -> list[dict[str, object]]:
    return [{"path": str(drop), "convert": True, "settle_seconds": 0.05, **folder}]


def leftovers(state: Path) -> list[Path]:
    work = state / "converting"
    return sorted(work.rglob("*")) if work.exists() else []


# -- bad input: a clear answer, nothing lost ---------------------------------------------------
def test_bad_files_get_a_one_line_reason(tmp_path: Path, drop: Path, sandbox: Sandbox):
    video(drop / "whole.mov", H264_AAC)
    (drop / "cut.mov").write_bytes((drop / "whole.mov").read_bytes()[:2000])
    (drop / "text.heic").write_text("not a photo at all\n", encoding="utf-8")
    (drop / "empty.heic").write_bytes(b"")
    heic(drop / "photo.heic")
    (drop / "cut.heic").write_bytes((drop / "photo.heic").read_bytes()[:300])
    subtitles = tmp_path / "words.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n", encoding="utf-8")
    ffmpeg("-i", str(subtitles), str(drop / "words-only.mkv"))
    config = make_config(sandbox, tmp_path, converting(drop))
    scan_once(config)
    expected = {
        "cut.mov": "cannot convert QuickTime movie: ",
        "text.heic": "unsupported type: ASCII text",
        "empty.heic": "empty: the file has no bytes",
        "cut.heic": "cannot convert HEIC image: the image cannot be read",
        "words-only.mkv": "cannot convert Matroska video: the file has no audio or video stream",
    }
    for name, start in expected.items():
        document = read_sidecar(drop / name)
        assert document["status"] == "rejected", (name, document)
        assert document["error"].startswith(start), (name, document["error"])
        assert "\n" not in document["error"] and "Traceback" not in document["error"]
        assert str(drop) not in document["error"]
    assert read_sidecar(drop / "whole.mov")["status"] == "uploaded"
    assert read_sidecar(drop / "photo.heic")["status"] == "uploaded"
    assert leftovers(tmp_path / "state") == []


def test_a_conversion_that_takes_too_long_is_stopped_and_refused(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    # Long enough that no machine transcodes it within the limit: the limit must stop it.
    ffmpeg(
        *picture(20, "1280x720", 30),
        *tone(20),
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-c:a",
        "aac",
        str(drop / "long.mkv"),
    )
    heic(drop / "quick.heic")
    config = make_config(sandbox, tmp_path, converting(drop), convert_timeout_seconds=0.5)
    scan_once(config)
    document = read_sidecar(drop / "long.mkv")
    assert document["status"] == "rejected"
    assert document["error"] == "cannot convert it: took longer than 0.5s; stopped"
    assert read_sidecar(drop / "quick.heic")["status"] == "uploaded"  # the daemon went on
    assert not _running_on(drop / "long.mkv")
    assert leftovers(tmp_path / "state") == []


def _running_on(path: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, check=False)
    return found.returncode == 0


def test_without_a_converter_the_sidecar_says_what_to_install(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    video(drop / "clip.mov", H264_AAC)
    heic(drop / "photo.heic")
    (drop / "plain.png").write_bytes(media.png(seed=7))
    document = config_document(sandbox, tmp_path / "state", converting(drop))
    config = write_config(tmp_path / "config.yaml", document)
    # A machine with neither: no ffmpeg on PATH, and neither extra installed (their imports
    # fail as they do when the packages are missing).
    empty = tmp_path / "bin"
    empty.mkdir()
    blocked = "import sys; sys.modules.update(dict.fromkeys(['imageio_ffmpeg', 'PIL'], None)); "
    run = "from watcher.commands.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", blocked + run, "scan", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **KEY_ENV, "PATH": str(empty)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    movie = read_sidecar(drop / "clip.mov")
    assert movie["status"] == "rejected"
    assert "apt-get install ffmpeg" in movie["error"]
    assert "pip install 'heygen-watcher[convert]'" in movie["error"]
    photo = read_sidecar(drop / "photo.heic")
    assert photo["status"] == "rejected"
    assert "pip install 'heygen-watcher[convert]'" in photo["error"]
    assert read_sidecar(drop / "plain.png")["status"] == "uploaded"


def test_the_dry_run_says_what_would_be_converted(tmp_path: Path, drop: Path, sandbox: Sandbox):
    video(drop / "clip.mov", H264_AAC)
    heic(drop / "photo.heic")
    document = config_document(sandbox, tmp_path / "state", converting(drop))
    config = write_config(tmp_path / "config.yaml", document)
    done = cli("scan", "--dry-run", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert f"would convert: {drop / 'clip.mov'}: video/quicktime → video/mp4" in done.stdout
    assert f"would convert: {drop / 'photo.heic'}: image/heic → image/jpeg" in done.stdout
    assert "2 would be uploaded (2 converted first)" in done.stderr
    assert not sandbox.requests and not (tmp_path / "state").exists()


def test_a_folder_that_does_not_convert_says_it_could(tmp_path: Path, drop: Path, sandbox: Sandbox):
    heic(drop / "photo.heic")
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.05}])
    scan_once(config)
    error = read_sidecar(drop / "photo.heic")["error"]
    assert error.endswith("; `convert: true` on the folder would convert it to image/jpeg")


# -- kill -9 at each step ------------------------------------------------------------------------
def slow_ffmpeg(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An ffmpeg that, while ``hold`` exists, waits before converting (never before a probe),
    and notes each conversion it starts in ``runs``."""
    hold = tmp_path / "hold"
    runs = tmp_path / "runs"
    wrapper = tmp_path / "slow" / "ffmpeg"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        'case "$*" in *faststart*)\n'
        f'  echo run >> "{runs}"\n'
        f'  while [ -e "{hold}" ]; do sleep 0.05; done ;;\n'
        "esac\n"
        f'exec {REAL_FFMPEG} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return wrapper, hold, runs


def conversion_started(state: Path) -> bool:
    database = state / "journal.sqlite3"
    if not database.exists():
        return False
    try:
        with sqlite3.connect(database, timeout=5) as db:
            row = db.execute("SELECT COUNT(*) FROM conversions WHERE started_at IS NOT NULL")
            return bool(row.fetchone()[0])
    except sqlite3.Error:
        return False


def registered(state: Path, pid: int) -> bool:
    """The daemon has opened its journal (its signal handlers are in place by then)."""
    try:
        with sqlite3.connect(state / "journal.sqlite3", timeout=5) as db:
            return db.execute("SELECT 1 FROM daemons WHERE pid = ?", (pid,)).fetchone() is not None
    except sqlite3.Error:
        return False


def run_until_uploaded(config: Path, path: Path) -> None:
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        state = config.parent / "state"
        wait_for(lambda: registered(state, process.pid), 30, "the daemon to start")
        wait_sidecar(path, timeout=30, status="uploaded")
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, err


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_kill_9_during_a_conversion(tmp_path: Path, drop: Path, sandbox: Sandbox):
    wrapper, hold, runs = slow_ffmpeg(tmp_path)
    hold.touch()
    video(drop / "clip.mov", H264_AAC)
    original = (drop / "clip.mov").read_bytes()
    document = config_document(sandbox, tmp_path / "state", converting(drop), ffmpeg=str(wrapper))
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    wait_for(lambda: runs.exists() and conversion_started(tmp_path / "state"), 30, "converting")
    kill_9(process)
    # The converter does not outlive the daemon it worked for.
    wait_for(lambda: not _running_on(hold), 10, "the converter to die with the daemon")
    hold.unlink()
    run_until_uploaded(config, drop / "clip.mov")
    assert runs.read_text().count("run") == 2  # converted again: nothing had been uploaded
    assert len(sandbox.assets) == 1
    assert (drop / "clip.mov").read_bytes() == original
    assert leftovers(tmp_path / "state") == []


def test_kill_9_during_the_upload_of_a_converted_file(tmp_path: Path, drop: Path, sandbox: Sandbox):
    sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=30))
    video(drop / "clip.mov", H264_AAC)
    config = write_config(
        tmp_path / "config.yaml", config_document(sandbox, tmp_path / "state", converting(drop))
    )
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    wait_for(
        lambda: any(r.method == "PUT" and r.status == 0 for r in sandbox.requests), 30, "the PUT"
    )
    assert leftovers(tmp_path / "state")  # the converted bytes, being sent
    kill_9(process)
    sandbox.clear_faults()
    run_until_uploaded(config, drop / "clip.mov")
    (asset,) = sandbox.assets.values()  # PUT again into the same slot: one asset
    document = read_sidecar(drop / "clip.mov")
    assert document["asset_id"] == asset.asset_id and document["sha256"] == asset.sha256
    assert document["converted_from"]["action"] == "remux"
    assert leftovers(tmp_path / "state") == []


def test_kill_9_after_the_upload_is_recorded(tmp_path: Path, drop: Path, sandbox: Sandbox):
    wrapper, _, runs = slow_ffmpeg(tmp_path)
    video(drop / "clip.mov", H264_AAC)
    document = config_document(sandbox, tmp_path / "state", converting(drop), ffmpeg=str(wrapper))
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    first = wait_sidecar(drop / "clip.mov", timeout=30, status="uploaded")
    kill_9(process)
    run_until_uploaded(config, drop / "clip.mov")
    assert runs.read_text().count("run") == 1  # recorded: never converted again
    assert len(sandbox.assets) == 1
    assert read_sidecar(drop / "clip.mov") == first
    assert leftovers(tmp_path / "state") == []


@pytest.mark.parametrize("leftover", ["clip.mp4.part", "clip.mp4"])
def test_leftovers_of_a_dead_process_are_removed_at_start(
    tmp_path: Path, drop: Path, sandbox: Sandbox, leftover: str
):
    stray = tmp_path / "state" / "converting" / "0123456789abcdef01234567" / leftover
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a movie")
    heic(drop / "photo.heic")
    scan_once(make_config(sandbox, tmp_path, converting(drop)))
    assert leftovers(tmp_path / "state") == []
    assert read_sidecar(drop / "photo.heic")["status"] == "uploaded"


def test_check_config_says_which_folders_convert_and_with_what(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    document = config_document(sandbox, tmp_path / "state", converting(drop))
    config = write_config(tmp_path / "config.yaml", document)
    done = cli("check-config", "-c", str(config), env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    assert f"folders[0] ({drop}) converts what HeyGen refuses" in done.stdout
    assert "images (HEIC, AVIF, WebP, TIFF, GIF, BMP) with Pillow " in done.stdout
    assert "audio and video with ffmpeg " in done.stdout
    missing = write_config(
        tmp_path / "missing.yaml", {**document, "ffmpeg": str(tmp_path / "no-ffmpeg")}
    )
    done = cli("check-config", "-c", str(missing), env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    assert "WARNING: audio and video will be refused: the configured ffmpeg" in done.stderr


def test_the_target_is_one_the_protocol_takes_and_the_sandbox_refuses_the_others(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    # v1-upload carries no WAV (HeyGen documents it so): a lossless track becomes MP3 there.
    ffmpeg(*tone(), "-c:a", "flac", str(drop / "take.flac"))
    config = make_config(
        sandbox,
        tmp_path,
        converting(drop, types=["audio/mpeg", "audio/wav"]),
        api={"upload_protocol": "v1-upload"},
    )
    scan_once(config)
    document = read_sidecar(drop / "take.flac")
    assert document["status"] == "uploaded", document
    assert document["content_type"] == "audio/mpeg"
    # Had it made WAV, the sandbox would have refused it, as HeyGen does.
    wav = tmp_path / "take.wav"
    ffmpeg("-i", str(drop / "take.flac"), str(wav))
    answer = requests.post(
        f"{sandbox.upload_url}/v1/asset",
        data=wav.read_bytes(),
        headers={"X-Api-Key": SANDBOX_KEY, "Content-Type": "audio/wav"},
        timeout=10,
    )
    assert 400 <= answer.status_code < 500, answer.text


@pytest.mark.parametrize("protocol", ["v3-direct", "v3-multipart", "v1-upload"])
def test_converted_files_go_up_with_every_protocol(
    tmp_path: Path, drop: Path, sandbox: Sandbox, protocol: str
):
    video(drop / "clip.mov", H264_AAC)
    heic(drop / "photo.heic")
    config = make_config(sandbox, tmp_path, converting(drop), api={"upload_protocol": protocol})
    scan_once(config)
    for name, target in (("clip.mov", "video/mp4"), ("photo.heic", "image/jpeg")):
        document = read_sidecar(drop / name)
        assert document["status"] == "uploaded", document
        asset = sandbox.assets[document["asset_id"]]
        assert (document["content_type"], document["sha256"]) == (target, asset.sha256)
        assert document["size"] == asset.size
    assert leftovers(tmp_path / "state") == []


def test_the_ffmpeg_the_convert_extra_bundles_is_used_without_one_on_path(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    import imageio_ffmpeg

    video(drop / "clip.mov", H264_AAC)
    ffmpeg(*tone(), "-c:a", "aac", str(drop / "memo.m4a"))
    config = write_config(
        tmp_path / "config.yaml", config_document(sandbox, tmp_path / "state", converting(drop))
    )
    empty = tmp_path / "bin"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "scan", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **KEY_ENV, "PATH": str(empty)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    bundled_version = imageio_ffmpeg.get_ffmpeg_version()
    for name, target in (("clip.mov", "video/mp4"), ("memo.m4a", "audio/mpeg")):
        document = read_sidecar(drop / name)
        assert document["status"] == "uploaded", document
        assert document["content_type"] == target
        assert document["converted_from"]["tool_version"] == bundled_version


def test_metrics_count_conversions_and_their_seconds(tmp_path: Path, drop: Path, sandbox: Sandbox):
    from conftest import SANDBOX_KEY as KEY

    from watcher.config.apikey import ApiKey
    from watcher.service.daemon import Daemon
    from watcher.service.metrics import Metrics

    video(drop / "clip.mov", H264_AAC)
    heic(drop / "photo.heic")
    (drop / "cut.mov").write_bytes((drop / "clip.mov").read_bytes()[:2000])
    metrics = Metrics()
    daemon = Daemon(
        make_config(sandbox, tmp_path, converting(drop)),
        key=ApiKey(KEY, "test"),
        on_event=metrics.on_event,
    )
    daemon.start(watch=False)
    try:
        daemon.wait_until_idle()
    finally:
        daemon.stop()
    text = metrics.render().decode()
    assert 'heygen_watcher_conversions_total{result="remux"} 1.0' in text
    assert 'heygen_watcher_conversions_total{result="image"} 1.0' in text
    found = re.search(r"^heygen_watcher_conversion_seconds_total (\S+)$", text, re.MULTILINE)
    assert found is not None
    seconds = float(found.group(1))
    assert seconds > 0
    assert "heygen_watcher_conversions_in_progress 0.0" in text
    # The truncated movie was refused when it was looked at, before any conversion ran.
    assert read_sidecar(drop / "cut.mov")["status"] == "rejected"


def test_status_shows_conversions_in_progress(tmp_path: Path, drop: Path, sandbox: Sandbox):
    wrapper, hold, runs = slow_ffmpeg(tmp_path)
    hold.touch()
    video(drop / "clip.mov", H264_AAC)
    document = config_document(sandbox, tmp_path / "state", converting(drop), ffmpeg=str(wrapper))
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        wait_for(lambda: runs.exists(), 30, "the conversion to start")
        shown = cli("status", "-c", str(config))
        assert "converting now: 1 file(s)" in shown.stdout, shown.stdout
        hold.unlink()
        wait_sidecar(drop / "clip.mov", timeout=30, status="uploaded")
        shown = cli("status", "-c", str(config))
        assert "converting now" not in shown.stdout
    finally:
        hold.unlink(missing_ok=True)
        code, _, err = stop_cli(process)
    assert code == 0, err


def test_a_full_disk_while_converting_is_retried_not_refused(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    # The converted bytes go to a real 256 KiB tmpfs: a movie of a few hundred KiB fills it.
    work = tmp_path / "state" / "converting"
    work.mkdir(parents=True)
    with small_tmpfs(work):
        # Noise, so that the encoder cannot make it small.
        noisy = ["-vf", "noise=alls=60:allf=t", "-b:v", "2M"]
        ffmpeg(*picture(2, "640x480", 25), *tone(2), *H264_AAC, *noisy, str(drop / "big.mov"))
        document = config_document(sandbox, tmp_path / "state", converting(drop))
        config = write_config(tmp_path / "config.yaml", document)
        assert cli("scan", "-c", str(config), env=KEY_ENV).returncode == 1  # not done yet
        with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
            state, error = db.execute("SELECT state, last_error FROM files").fetchone()
        assert state == "retrying", (state, error)
        assert error.startswith("cannot write the converted file: ") and "No space" in error
        assert not (drop / "big.mov.asset.json").exists()  # nothing refused
    retried = cli("retry", "-c", str(config), env=KEY_ENV)  # room again: converted, uploaded
    assert retried.returncode == 0, retried.stderr
    assert read_sidecar(drop / "big.mov")["status"] == "uploaded"
    assert leftovers(tmp_path / "state") == []


def test_a_retried_upload_reuses_its_converted_bytes_and_a_final_failure_leaves_none(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    wrapper, _, runs = slow_ffmpeg(tmp_path)
    # Every quick try of the PUT fails: the file is tried again later, by the same process.
    sandbox.inject(Fault(method="PUT", server="storage", status=503, count=3))
    video(drop / "clip.mov", H264_AAC)
    document = config_document(
        sandbox,
        tmp_path / "state",
        converting(drop),
        ffmpeg=str(wrapper),
        retry_window_seconds=1,
    )
    config = write_config(tmp_path / "config.yaml", document)
    run_until_uploaded(config, drop / "clip.mov")
    assert runs.read_text().count("run") == 1  # converted once, sent twice
    assert len([r for r in sandbox.requests if r.method == "PUT"]) >= 4
    assert leftovers(tmp_path / "state") == []

    # Failing on every try: the file fails for good, and its converted bytes go with it.
    sandbox.inject(Fault(method="PUT", server="storage", status=503, count=1000))
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        wait_for(lambda: registered(tmp_path / "state", process.pid), 30, "the daemon")
        heic(drop / "photo.heic")
        wait_sidecar(drop / "photo.heic", timeout=30, status="failed")
        wait_for(lambda: leftovers(tmp_path / "state") == [], 10, "no converted bytes left")
    finally:
        code, _, err = stop_cli(process)
    assert code == 0, err


def test_without_ffmpeg_an_mp4_is_uploaded_as_it_is(tmp_path: Path, drop: Path, sandbox: Sandbox):
    # A converting folder looks at an MP4's codec; with no tool to look, it goes up unchanged.
    video(drop / "clip.mp4", H264_AAC)
    config = make_config(
        sandbox, tmp_path, converting(drop), ffmpeg=str(tmp_path / "no-such-ffmpeg")
    )
    scan_once(config)
    document = read_sidecar(drop / "clip.mp4")
    assert document["status"] == "uploaded", document
    assert "converted_from" not in document
    assert document["sha256"] == hashlib.sha256((drop / "clip.mp4").read_bytes()).hexdigest()
