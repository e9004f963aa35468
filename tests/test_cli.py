"""The command line as a user runs it: real subprocesses, real signals, the real sandbox."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import media
import pytest
from conftest import SANDBOX_KEY, wait_for
from daemon_helpers import (
    FAST_API,
    KEY_ENV,
    cli,
    config_document,
    read_sidecar,
    sidecar_of,
    start_cli,
    stop_cli,
    wait_sidecar,
    write_config,
)

from watcher.sandbox import Fault, Sandbox


def api_only_config(tmp_path: Path, sandbox: Sandbox, **api: object) -> Path:
    document = {
        "api": {
            "base_url": sandbox.api_url,
            "upload_base_url": sandbox.upload_url,
            **FAST_API,
            **api,
        },
        "state_dir": str(tmp_path / "state"),
    }
    return write_config(tmp_path / "api.yaml", document)


# -- upload -------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["v1-presigned", "v3-direct", "v3-multipart"])
def test_upload_each_protocol(tmp_path: Path, sandbox: Sandbox, protocol: str):
    config = api_only_config(tmp_path, sandbox, upload_protocol=protocol)
    files = [tmp_path / "a b.png", tmp_path / "c.wav"]
    files[0].write_bytes(media.png())
    files[1].write_bytes(media.wav())
    result = cli("upload", "-c", str(config), *map(str, files), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["uploaded", "uploaded"]
    assert [line["path"] for line in lines] == [str(f) for f in files]
    for path, line in zip(files, lines, strict=True):
        document = read_sidecar(path)
        assert document["asset_id"] == line["asset_id"]
        assert document["protocol"] == protocol
        assert sandbox.assets[line["asset_id"]].path.read_bytes() == path.read_bytes()
    assert "2 files: 2 uploaded" in result.stderr
    assert "Traceback" not in result.stderr


def test_upload_with_v1_upload_takes_its_types_only(tmp_path: Path, sandbox: Sandbox):
    config = api_only_config(tmp_path, sandbox, upload_protocol="v1-upload")
    image, voice = tmp_path / "a.png", tmp_path / "b.wav"
    image.write_bytes(media.png())
    voice.write_bytes(media.wav())
    result = cli("upload", "-c", str(config), str(image), str(voice), env=KEY_ENV)
    assert result.returncode == 1
    lines = {json.loads(line)["path"]: json.loads(line) for line in result.stdout.splitlines()}
    assert lines[str(image)]["status"] == "uploaded"
    assert lines[str(voice)]["status"] == "rejected"
    assert "audio/wav" not in read_sidecar(voice)["allowed_types"]
    (upload,) = [r for r in sandbox.requests if r.server == "upload"]
    assert upload.headers["Content-Type"] == "image/png"


def test_upload_mixed_results_exit_1(tmp_path: Path, sandbox: Sandbox):
    config = api_only_config(tmp_path, sandbox)
    good, bad = tmp_path / "ok.jpg", tmp_path / "notes.jpg"
    good.write_bytes(media.jpeg())
    bad.write_bytes(b"just text\n")
    result = cli("upload", "-c", str(config), str(good), str(bad), env=KEY_ENV)
    assert result.returncode == 1
    statuses = [json.loads(line)["status"] for line in result.stdout.splitlines()]
    assert statuses == ["uploaded", "rejected"]
    rejected = read_sidecar(bad)
    assert rejected["detected_type"] == "text/plain"
    assert "image/jpeg" in rejected["allowed_types"]


def test_upload_takes_what_the_protocol_takes(tmp_path: Path, sandbox: Sandbox):
    corpus = Path(__file__).parent / "media" / "corpus"
    webm, ts = tmp_path / "clip.webm", tmp_path / "stream.ts"
    webm.write_bytes((corpus / "clip.webm").read_bytes())
    ts.write_bytes((corpus / "stream.ts").read_bytes())
    v1 = api_only_config(tmp_path, sandbox)
    result = cli("upload", "-c", str(v1), str(webm), str(ts), env=KEY_ENV)
    assert result.returncode == 1
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["status"] for d in documents] == ["rejected", "rejected"]
    assert documents[0]["error"].startswith("unsupported type: WebM video (video/webm); ")
    assert documents[1]["error"].startswith("unsupported type: MPEG transport stream")
    assert "video/webm" not in documents[1]["allowed_types"]
    v3 = api_only_config(tmp_path, sandbox, upload_protocol="v3-multipart")
    result = cli("upload", "-c", str(v3), str(webm), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["content_type"] == "video/webm"


def test_upload_with_a_wrong_key_is_one_clear_line(tmp_path: Path, sandbox: Sandbox):
    config = api_only_config(tmp_path, sandbox)
    files = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    for seed, path in enumerate(files):
        path.write_bytes(media.png(seed=seed))
    result = cli(
        "upload", "-c", str(config), *map(str, files), env={"HEYGEN_API_KEY": "wrong-key-1234"}
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "wrong-key-1234" not in result.stderr + result.stdout
    (line,) = [line for line in result.stderr.splitlines() if "refused the key" in line]
    assert "401" in line and "environment variable HEYGEN_API_KEY" in line
    # Not the files' fault: no sidecar marks them failed, and the queue was not burned: only
    # the uploads already running (concurrency 2) reached the API.
    assert not any(sidecar_of(path).exists() for path in files)
    assert len([r for r in sandbox.requests if r.path == "/v1/asset"]) <= 2


def test_upload_without_a_key_says_where_it_looked(tmp_path: Path, sandbox: Sandbox):
    config = api_only_config(tmp_path, sandbox)
    (tmp_path / "a.png").write_bytes(media.png())
    result = cli("upload", "-c", str(config), str(tmp_path / "a.png"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "heygen-watcher: no API key: set the environment variable HEYGEN_API_KEY "
        "or api.api_key_file in the config"
    )


def test_upload_key_file_too_open(tmp_path: Path, sandbox: Sandbox):
    key_file = tmp_path / "key"
    key_file.write_text(SANDBOX_KEY)
    os.chmod(key_file, 0o640)
    config = api_only_config(tmp_path, sandbox, api_key_file=str(key_file))
    (tmp_path / "a.png").write_bytes(media.png())
    result = cli("upload", "-c", str(config), str(tmp_path / "a.png"))
    assert result.returncode == 2
    assert "too open" in result.stderr and SANDBOX_KEY not in result.stderr


def test_upload_transient_failure_writes_a_failed_sidecar(tmp_path: Path, sandbox: Sandbox):
    config = api_only_config(tmp_path, sandbox)
    sandbox.inject(Fault(method="PUT", server="storage", status=503, count=100))
    (tmp_path / "a.png").write_bytes(media.png())
    result = cli("upload", "-c", str(config), str(tmp_path / "a.png"), env=KEY_ENV)
    assert result.returncode == 1
    document = read_sidecar(tmp_path / "a.png")
    assert document["status"] == "failed"
    assert "503" in document["error"]


def test_upload_multipart_refuses_big_files_with_a_clear_error(tmp_path: Path, sandbox: Sandbox):
    config = api_only_config(tmp_path, sandbox, upload_protocol="v3-multipart")
    big = media.sized_mp4(tmp_path / "big.mp4", 33 * 1024 * 1024)
    write_config(
        config,
        {
            "api": {"base_url": sandbox.api_url, **FAST_API, "upload_protocol": "v3-multipart"},
            "defaults": {"max_bytes": {"video": "1 GB"}},
        },
    )
    result = cli("upload", "-c", str(config), str(big), env=KEY_ENV)
    assert result.returncode == 1
    assert "32 MB" in read_sidecar(big)["error"]
    assert sandbox.requests == []


# -- check-config -------------------------------------------------------------------------------
def test_check_config_ok_and_errors(tmp_path: Path, sandbox: Sandbox):
    drop = tmp_path / "drop"
    drop.mkdir()
    good = write_config(
        tmp_path / "good.yaml", config_document(sandbox, tmp_path / "state", [{"path": str(drop)}])
    )
    result = cli("check-config", "-c", str(good), env=KEY_ENV)
    assert result.returncode == 0
    assert result.stdout.startswith("OK")
    assert result.stderr == ""
    bad = write_config(
        tmp_path / "bad.yaml",
        {"folders": [{"path": str(tmp_path / "gone")}, {"path": str(drop), "colour": 1}]},
    )
    result = cli("check-config", "-c", str(bad))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert f"{bad}: folders[0].path: folder does not exist" in lines[0]
    assert f"{bad}: folders[1].colour: unknown key" in lines[1]
    assert "Traceback" not in result.stderr


def test_check_config_warns_about_a_type_the_protocol_cannot_take(tmp_path: Path, sandbox: Sandbox):
    drop = tmp_path / "drop"
    drop.mkdir()
    folders = [{"path": str(drop), "types": ["image/png", "video/webm"]}]
    document = config_document(sandbox, tmp_path / "state", folders)
    result = cli(
        "check-config", "-c", str(write_config(tmp_path / "c.yaml", document)), env=KEY_ENV
    )
    assert result.returncode == 0
    assert result.stdout.startswith("OK")
    assert result.stderr.startswith(
        f"WARNING: {tmp_path / 'c.yaml'}: folders[0].types: video/webm cannot be uploaded with "
        "api.upload_protocol v1-presigned"
    )


def test_run_refuses_a_missing_folder(tmp_path: Path, sandbox: Sandbox):
    config = write_config(
        tmp_path / "c.yaml",
        config_document(sandbox, tmp_path / "state", [{"path": str(tmp_path / "nope")}]),
    )
    result = cli("run", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 2
    assert "folders[0].path: folder does not exist" in result.stderr


# -- run and scan -------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_uploads_and_stops_cleanly_on_signal(tmp_path: Path, sandbox: Sandbox, sig: int):
    drop = tmp_path / "drop"
    drop.mkdir()
    config = write_config(
        tmp_path / "c.yaml",
        config_document(sandbox, tmp_path / "state", [{"path": str(drop), "settle_seconds": 0.2}]),
    )
    process = start_cli("run", "-c", str(config), "--log-format", "json", env=KEY_ENV)
    try:
        (drop / "a.png").write_bytes(media.png())
        wait_sidecar(drop / "a.png", timeout=20)
        started = time.monotonic()
        code, out, err = stop_cli(process, sig)
    finally:
        process.kill()
    assert code == 0
    # Well inside the 20 s shutdown timeout: nothing was left to wait for.
    assert time.monotonic() - started < 15
    events = [json.loads(line) for line in err.splitlines()]
    assert any(
        e["message"].startswith("uploaded as") and e["file"].endswith("a.png") for e in events
    )
    assert SANDBOX_KEY not in err + out
    assert not [p for p in drop.iterdir() if ".tmp" in p.name]


def test_sigterm_during_an_upload_leaves_no_half_written_sidecar(tmp_path: Path, sandbox: Sandbox):
    drop = tmp_path / "drop"
    drop.mkdir()
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "settle_seconds": 0.1}],
        shutdown_timeout_seconds=0.5,
    )
    config = write_config(tmp_path / "c.yaml", document)
    sandbox.inject(Fault(method="PUT", server="storage", delay_seconds=30))
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        (drop / "a.png").write_bytes(media.png())
        wait_for(
            lambda: any(r.method == "PUT" for r in sandbox.requests) or len(sandbox.requests) > 0,
            timeout=20,
            what="the upload to start",
        )
        wait_for(lambda: any(r.path == "/v1/asset" for r in sandbox.requests), timeout=20)
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, err
    # Only the file (and the folder's claim, which says which journal it belongs to).
    assert sorted(p.name for p in drop.iterdir()) == [".heygen-watcher.lock", "a.png"]


def test_scan_exit_codes(tmp_path: Path, sandbox: Sandbox):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.png").write_bytes(media.png(seed=1))
    (drop / "b.png").write_bytes(media.png(seed=2))
    config = write_config(
        tmp_path / "c.yaml",
        config_document(sandbox, tmp_path / "state", [{"path": str(drop), "settle_seconds": 0.1}]),
    )
    result = cli("scan", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    assert "2 uploaded" in result.stderr
    (drop / "c.png").write_bytes(media.png(seed=3))
    sandbox.inject(Fault(method="POST", path_prefix="/v1/asset", status=400, count=10))
    result = cli("scan", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 1
    assert read_sidecar(drop / "c.png")["status"] == "failed"
    assert len(sandbox.assets) == 2


def test_the_sandbox_tour(tmp_path: Path):
    process = start_cli("run", "--sandbox", cwd=tmp_path)
    try:
        wait_for(lambda: (tmp_path / "drop").is_dir(), timeout=20, what="./drop")
        (tmp_path / "drop" / "hello.png").write_bytes(media.png())
        document = wait_sidecar(tmp_path / "drop" / "hello.png", timeout=20)
        code, _, err = stop_cli(process)
    finally:
        process.kill()
    assert code == 0
    assert document["status"] == "uploaded"
    assert "Drop files into" in err
    assert (tmp_path / ".heygen-watcher" / "journal.sqlite3").exists()


def test_the_sandbox_command_serves_uploads(tmp_path: Path):
    process = start_cli("sandbox", "--port", "0", "--api-key", "tour-key")
    try:
        line = wait_for(lambda: process.stdout.readline(), timeout=20, what="sandbox banner")
        banner = line
        while "http://" not in banner:
            banner = process.stdout.readline()
        api_url = banner[banner.index("http://") :].split()[0]
        config = write_config(tmp_path / "c.yaml", {"api": {"base_url": api_url, **FAST_API}})
        (tmp_path / "a.png").write_bytes(media.png())
        result = cli(
            "upload", "-c", str(config), str(tmp_path / "a.png"), env={"HEYGEN_API_KEY": "tour-key"}
        )
        assert result.returncode == 0, result.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


# -- probe --------------------------------------------------------------------------------------
def test_probe_reports_each_protocol(tmp_path: Path, sandbox: Sandbox):
    config = api_only_config(tmp_path, sandbox, upload_protocol="v1-upload")
    result = cli("probe", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "v1-presigned",
        "v1-upload",
        "v3-direct",
        "v3-multipart",
    ]
    assert all(" OK: asset " in line for line in lines)
    assert "(configured)" in lines[1]
    assert len(sandbox.assets) == 4
    assert {asset.content_type for asset in sandbox.assets.values()} == {"image/png"}
    assert SANDBOX_KEY not in result.stdout + result.stderr


def test_probe_exits_1_when_the_configured_protocol_is_refused(tmp_path: Path, sandbox: Sandbox):
    # An account without the one-request upload: the upload host refuses it.
    sandbox.inject(Fault(server="upload", status=403, count=5))
    config = api_only_config(tmp_path, sandbox, upload_protocol="v1-upload")
    result = cli("probe", "-c", str(config), env=KEY_ENV)
    assert result.returncode == 1
    (refused,) = [line for line in result.stdout.splitlines() if "refused" in line]
    assert refused.startswith("v1-upload") and "403" in refused and "(configured)" in refused
    assert "Traceback" not in result.stderr
    other = api_only_config(tmp_path, sandbox, upload_protocol="v1-presigned")
    sandbox.inject(Fault(server="upload", status=403, count=5))
    assert cli("probe", "-c", str(other), env=KEY_ENV).returncode == 0
