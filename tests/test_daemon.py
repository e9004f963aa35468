"""The daemon end to end: real watchdog observers on real temp folders, real sandbox over HTTP."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import media
import pytest
from conftest import wait_for
from daemon_helpers import (
    make_config,
    read_sidecar,
    running,
    scan_once,
    sidecar_of,
    uploads_of,
    wait_sidecar,
)

from watcher.sandbox import Sandbox


def require_file_leases(folder: Path) -> None:
    """Skip, saying why, where this filesystem or process cannot take Linux file leases (the
    only way to see that a writer still holds a file open)."""
    probe = folder / ".lease-probe"
    probe.write_bytes(b"x")
    fd = os.open(probe, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError as error:
        pytest.skip(f"file leases are not supported here ({error.strerror})")
    finally:
        os.close(fd)
        probe.unlink()


SETTLE = 0.3


def folder(drop: Path, **options: object) -> dict[str, object]:
    return {"path": str(drop), "settle_seconds": SETTLE, **options}


# -- arrival patterns ---------------------------------------------------------------------------
def test_plain_write_is_uploaded_once(tmp_path: Path, drop: Path, sandbox: Sandbox):
    data = media.png(seed=1)
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        (drop / "photo.png").write_bytes(data)
        document = wait_sidecar(drop / "photo.png")
    assert document["status"] == "uploaded"
    assert document["content_type"] == "image/png"
    assert document["size"] == len(data)
    assert document["protocol"] == "v1-presigned"
    assert document["uploaded_at"].endswith("Z")
    (asset,) = uploads_of(sandbox, data)
    assert document["asset_id"] == asset.asset_id
    assert document["sha256"] == asset.sha256
    assert len(sandbox.assets) == 1


def test_files_present_at_start_are_uploaded(tmp_path: Path, drop: Path, sandbox: Sandbox):
    (drop / "sub" / "deeper").mkdir(parents=True)
    files = {drop / "a.wav": media.wav(seed=1), drop / "sub" / "deeper" / "b.mp3": media.mp3()}
    for path, data in files.items():
        path.write_bytes(data)
        old = time.time() - 60
        os.utime(path, (old, old))
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        for path in files:
            assert wait_sidecar(path)["status"] == "uploaded"
    assert len(sandbox.assets) == 2


def test_slow_writes_in_bursts_upload_the_complete_file_once(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    data = media.mp4(payload=400_000, seed=3)
    target = drop / "scan.mp4"
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        with open(target, "wb") as out:
            for start in range(0, len(data), 50_000):
                out.write(data[start : start + 50_000])
                out.flush()
                time.sleep(SETTLE / 3)  # a scanner or a slow network: quiet, but not for long
        wait_sidecar(target)
    (asset,) = uploads_of(sandbox, data)
    assert len(sandbox.assets) == 1
    assert asset.size == len(data)


def test_a_file_held_open_for_writing_waits_even_through_long_pauses(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    require_file_leases(drop)
    data = media.mp4(payload=100_000, seed=4)
    target = drop / "held.mp4"
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        with open(target, "wb") as out:
            out.write(data[:1000])
            out.flush()
            # Longer than the quiet period: only the open write handle tells it is unfinished.
            deadline = time.monotonic() + SETTLE * 4
            while time.monotonic() < deadline:
                assert not sidecar_of(target).exists()
                time.sleep(0.05)
            out.write(data[1000:])
        wait_sidecar(target)
    assert [a.size for a in sandbox.assets.values()] == [len(data)]


def test_rename_into_place_like_rsync(tmp_path: Path, drop: Path, sandbox: Sandbox):
    data = media.jpeg(b"rsync")
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        temp = drop / ".photo.jpg.Xa81Qz"
        temp.write_bytes(data)
        os.rename(temp, drop / "photo.jpg")
        wait_sidecar(drop / "photo.jpg")
    assert len(uploads_of(sandbox, data)) == 1
    assert not sidecar_of(temp).exists()
    assert len(sandbox.assets) == 1


@pytest.mark.parametrize("partial", ["clip.mp4.crdownload", "clip.mp4.part", "clip.mp4.partial"])
def test_browser_downloads_are_uploaded_after_the_final_rename(
    tmp_path: Path, drop: Path, sandbox: Sandbox, partial: str
):
    data = media.mp4(seed=5)
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        (drop / partial).write_bytes(data[:100])
        with open(drop / partial, "ab") as out:
            out.write(data[100:])
        os.rename(drop / partial, drop / "clip.mp4")
        wait_sidecar(drop / "clip.mp4")
    assert len(sandbox.assets) == 1
    assert not sidecar_of(drop / partial).exists()


def test_a_big_copy_is_uploaded_once_and_complete(tmp_path: Path, drop: Path, sandbox: Sandbox):
    source = media.sized_mp4(tmp_path / "source.mp4", 30 * 1024 * 1024)
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        shutil.copyfile(source, drop / "copy.mp4")
        document = wait_sidecar(drop / "copy.mp4", timeout=30)
    assert document["size"] == source.stat().st_size
    (asset,) = sandbox.assets.values()
    assert asset.size == source.stat().st_size


def test_a_moved_in_folder_and_a_new_subfolder(tmp_path: Path, drop: Path, sandbox: Sandbox):
    outside = tmp_path / "outside" / "album"
    outside.mkdir(parents=True)
    (outside / "one.png").write_bytes(media.png(seed=11))
    (outside / "two.png").write_bytes(media.png(seed=12))
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        shutil.move(str(outside), str(drop / "album"))
        (drop / "fresh").mkdir()
        (drop / "fresh" / "three.png").write_bytes(media.png(seed=13))
        for path in (
            drop / "album" / "one.png",
            drop / "album" / "two.png",
            drop / "fresh" / "three.png",
        ):
            wait_sidecar(path)
    assert len(sandbox.assets) == 3


def test_non_recursive_folders_ignore_subfolders(tmp_path: Path, drop: Path, sandbox: Sandbox):
    (drop / "sub").mkdir()
    (drop / "sub" / "inner.png").write_bytes(media.png(seed=21))
    config = make_config(sandbox, tmp_path, [folder(drop, recursive=False)])
    with running(config):
        (drop / "top.png").write_bytes(media.png(seed=22))
        wait_sidecar(drop / "top.png")
        (drop / "sub" / "later.png").write_bytes(media.png(seed=23))
        (drop / "marker.png").write_bytes(media.png(seed=24))
        wait_sidecar(drop / "marker.png")
    scan_once(config)
    assert not sidecar_of(drop / "sub" / "inner.png").exists()
    assert not sidecar_of(drop / "sub" / "later.png").exists()


def test_unicode_and_spaces_in_names(tmp_path: Path, drop: Path, sandbox: Sandbox):
    names = ["résumé photo.png", "日本語 ファイル.jpg", "emoji 🎬 clip.mp4"]
    payloads = [media.png(seed=31), media.jpeg(b"u"), media.mp4(seed=32)]
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        for name, data in zip(names, payloads, strict=True):
            (drop / name).write_bytes(data)
        for name in names:
            document = wait_sidecar(drop / name)
            assert document["file"] == name
    assert len(sandbox.assets) == 3


def test_polling_observer_for_network_shares(tmp_path: Path, drop: Path, sandbox: Sandbox):
    with running(make_config(sandbox, tmp_path, [folder(drop, polling=True)])):
        (drop / "nfs.png").write_bytes(media.png(seed=41))
        wait_sidecar(drop / "nfs.png")
    assert len(sandbox.assets) == 1


# -- rejections ---------------------------------------------------------------------------------
def test_every_rejection_reason_gets_a_sidecar(tmp_path: Path, drop: Path, sandbox: Sandbox):
    options = folder(drop, types=["image/png", "audio/wav"], max_bytes={"audio": 100})
    with running(make_config(sandbox, tmp_path, [options])):
        (drop / "empty.png").write_bytes(b"")
        (drop / "notes.png").write_bytes(b"plain words, not a picture\n")
        (drop / "photo.jpg").write_bytes(media.jpeg())  # a real type, but not allowed here
        (drop / "long.wav").write_bytes(media.wav(frames=1000))
        empty = wait_sidecar(drop / "empty.png")
        text = wait_sidecar(drop / "notes.png")
        jpeg = wait_sidecar(drop / "photo.jpg")
        big = wait_sidecar(drop / "long.wav")
    assert {d["status"] for d in (empty, text, jpeg, big)} == {"rejected"}
    assert "empty" in empty["error"]
    assert text["detected_type"] == "text/plain"
    assert text["allowed_types"] == ["image/png", "audio/wav"]
    assert "text/plain" in text["error"] and "image/png" in text["error"]
    assert jpeg["detected_type"] == "image/jpeg"
    assert "too large" in big["error"] and "100" in big["error"]
    assert sandbox.requests == []


def test_the_extension_never_decides(tmp_path: Path, drop: Path, sandbox: Sandbox):
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        (drop / "actually-a-png.mp3").write_bytes(media.png(seed=51))
        document = wait_sidecar(drop / "actually-a-png.mp3")
    assert document["status"] == "uploaded"
    assert document["content_type"] == "image/png"


def test_on_reject_ignore_writes_no_sidecar(tmp_path: Path, drop: Path, sandbox: Sandbox):
    with running(make_config(sandbox, tmp_path, [folder(drop, on_reject="ignore")])) as daemon:
        (drop / "notes.txt").write_bytes(b"words\n")
        (drop / "ok.png").write_bytes(media.png(seed=52))
        wait_sidecar(drop / "ok.png")
        wait_for(lambda: daemon.journal.get(str(drop / "notes.txt")), what="rejection recorded")
    assert not sidecar_of(drop / "notes.txt").exists()


# -- ignored and skipped ------------------------------------------------------------------------
def test_symlinks_fifos_sockets_hidden_partial_and_sidecars_are_not_uploaded(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    outside = tmp_path / "secret.png"
    outside.write_bytes(media.png(seed=61))
    config = make_config(sandbox, tmp_path, [folder(drop)])
    with running(config):
        (drop / "link.png").symlink_to(outside)
        os.mkfifo(drop / "pipe.png")  # opening it would block the daemon forever
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(drop / "sock.png"))
        (drop / ".hidden.png").write_bytes(media.png(seed=62))
        (drop / "~lock.png").write_bytes(media.png(seed=63))
        (drop / ".~lock.doc#").write_bytes(b"x")
        (drop / "x.png.tmp").write_bytes(media.png(seed=64))
        (drop / "x.png.swp").write_bytes(media.png(seed=65))
        (drop / "stray.png.asset.json").write_text('{"schema": "heygen-watcher/asset/v1"}')
        (drop / "marker.png").write_bytes(media.png(seed=66))
        wait_sidecar(drop / "marker.png")
        server.close()
    scan_once(config)
    assert len(sandbox.assets) == 1
    leftovers = sorted(p.name for p in drop.iterdir() if p.name.endswith(".asset.json"))
    assert leftovers == ["marker.png.asset.json", "stray.png.asset.json"]


def test_user_ignore_globs(tmp_path: Path, drop: Path, sandbox: Sandbox):
    (drop / "drafts").mkdir()
    config = make_config(sandbox, tmp_path, [folder(drop, ignore=["drafts/*", "*.raw.png"])])
    with running(config):
        (drop / "drafts" / "a.png").write_bytes(media.png(seed=71))
        (drop / "b.raw.png").write_bytes(media.png(seed=72))
        (drop / "marker.png").write_bytes(media.png(seed=73))
        wait_sidecar(drop / "marker.png")
    scan_once(config)
    assert len(sandbox.assets) == 1


# -- records and restarts -----------------------------------------------------------------------
def test_restart_skips_done_files(tmp_path: Path, drop: Path, sandbox: Sandbox):
    config = make_config(sandbox, tmp_path, [folder(drop)])
    (drop / "a.png").write_bytes(media.png(seed=81))
    (drop / "b.txt").write_bytes(b"not media\n")
    with running(config):
        wait_sidecar(drop / "a.png")
        wait_sidecar(drop / "b.txt")
    first = read_sidecar(drop / "a.png")
    sandbox.clear_requests()
    with running(config) as daemon:
        daemon.wait_until_idle()
    assert sandbox.requests == []
    assert read_sidecar(drop / "a.png") == first


def test_a_lost_journal_is_not_a_reason_to_upload_again(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    (drop / "a.png").write_bytes(media.png(seed=82))
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        wait_sidecar(drop / "a.png")
    shutil.rmtree(tmp_path / "state")
    sandbox.clear_requests()
    with running(make_config(sandbox, tmp_path, [folder(drop)])) as daemon:
        daemon.wait_until_idle()
    assert sandbox.requests == []


def test_changed_bytes_are_uploaded_again_keeping_the_previous_asset(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    target = drop / "a.png"
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        target.write_bytes(media.png(seed=91))
        first = wait_sidecar(target)
        target.write_bytes(media.png(width=8, seed=92))
        second = wait_for(
            lambda: (doc := read_sidecar(target))["asset_id"] != first["asset_id"] and doc,
            what="a second upload",
        )
    assert second["previous_asset_id"] == first["asset_id"]
    assert len(sandbox.assets) == 2


def test_touching_a_file_does_not_upload_it_again(tmp_path: Path, drop: Path, sandbox: Sandbox):
    target = drop / "a.png"
    with running(make_config(sandbox, tmp_path, [folder(drop)])) as daemon:
        target.write_bytes(media.png(seed=93))
        first = wait_sidecar(target)
        os.utime(target)
        wait_for(
            lambda: read_sidecar(target)["mtime_ns"] == target.stat().st_mtime_ns,
            what="the sidecar to follow the new mtime",
        )
        daemon.wait_until_idle()
    assert len(sandbox.assets) == 1
    assert read_sidecar(target)["asset_id"] == first["asset_id"]


def test_sidecar_dir_mirrors_the_tree(tmp_path: Path, drop: Path, sandbox: Sandbox):
    mirror = tmp_path / "sidecars"
    (drop / "sub").mkdir()
    with running(make_config(sandbox, tmp_path, [folder(drop, sidecar_dir=str(mirror))])):
        (drop / "sub" / "a.png").write_bytes(media.png(seed=94))
        wait_for(lambda: (mirror / "sub" / "a.png.asset.json").exists(), what="mirror sidecar")
    assert not sidecar_of(drop / "sub" / "a.png").exists()


def test_after_upload_move_takes_the_sidecar_along(tmp_path: Path, drop: Path, sandbox: Sandbox):
    done = tmp_path / "done"
    (drop / "sub").mkdir()
    options = folder(drop, after_upload={"move": str(done)})
    with running(make_config(sandbox, tmp_path, [options])):
        (drop / "sub" / "a.png").write_bytes(media.png(seed=95))
        document = wait_sidecar(done / "sub" / "a.png")
    assert document["status"] == "uploaded"
    assert not (drop / "sub" / "a.png").exists()
    assert not sidecar_of(drop / "sub" / "a.png").exists()


def test_the_periodic_rescan_catches_missed_events(tmp_path: Path, drop: Path, sandbox: Sandbox):
    config = make_config(sandbox, tmp_path, [folder(drop)], rescan_seconds=0.2)
    with running(config, root_check_seconds=3600) as daemon:
        daemon.folders.watches[0].stop()  # as if inotify had overflowed and dropped every event
        (drop / "missed.png").write_bytes(media.png(seed=96))
        wait_sidecar(drop / "missed.png")


def test_a_folder_that_disappears_is_watched_again_when_it_returns(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    config = make_config(sandbox, tmp_path, [folder(drop)])
    with running(config, root_check_seconds=0.1) as daemon:
        shutil.rmtree(drop)
        wait_for(lambda: daemon.folders.watches[0].missing, what="the folder to be seen missing")
        drop.mkdir()
        wait_for(
            lambda: not daemon.folders.watches[0].missing and daemon.folders.watches[0].alive,
            what="the watch to come back",
        )
        (drop / "back.png").write_bytes(media.png(seed=97))
        wait_sidecar(drop / "back.png")


def test_many_files_at_once_each_uploaded_once(tmp_path: Path, drop: Path, sandbox: Sandbox):
    payloads = {drop / f"f{i:03}.png": media.png(seed=i) for i in range(60)}

    def writer() -> None:
        for path, data in payloads.items():
            path.write_bytes(data)

    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        for path in payloads:
            wait_sidecar(path)
    assert len(sandbox.assets) == len({data for data in payloads.values()})
    puts = [r for r in sandbox.requests if r.method == "PUT"]
    assert len(puts) == len(sandbox.assets)


# -- finishing fast where it is safe ------------------------------------------------------------
def test_a_rename_into_place_skips_the_quiet_period(tmp_path: Path, drop: Path, sandbox: Sandbox):
    staging = tmp_path / "staging"
    staging.mkdir()
    with running(make_config(sandbox, tmp_path, [folder(drop, settle_seconds=30)])):
        (staging / "done.png").write_bytes(media.png(seed=101))
        os.rename(staging / "done.png", drop / "done.png")
        # Far sooner than the 30 s quiet period: the rename says the writer is done.
        wait_sidecar(drop / "done.png", timeout=10)


def test_close_after_write_is_trusted_only_where_configured(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    folders = [
        folder(drop, settle_seconds=30),
        folder(trusted, settle_seconds=30, trust_close_write=True),
    ]
    with running(make_config(sandbox, tmp_path, folders)):
        (drop / "plain.png").write_bytes(media.png(seed=102))
        (trusted / "plain.png").write_bytes(media.png(seed=103))
        wait_sidecar(trusted / "plain.png", timeout=10)
        assert not sidecar_of(drop / "plain.png").exists()  # still in its 30 s quiet period


def test_v1_uploads_read_a_new_file_once(
    tmp_path: Path, drop: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
):
    import watcher.pipeline.take

    def no_separate_hash(path: Path) -> str:
        raise AssertionError(f"{path} was hashed before its upload")

    monkeypatch.setattr(watcher.pipeline.take, "sha256_file", no_separate_hash)
    data = media.mp4(payload=200_000, seed=104)
    with running(make_config(sandbox, tmp_path, [folder(drop)])):
        (drop / "clip.mp4").write_bytes(data)
        document = wait_sidecar(drop / "clip.mp4")
    (asset,) = uploads_of(sandbox, data)
    assert document["sha256"] == asset.sha256
