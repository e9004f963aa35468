"""Log lines cannot be forged: file names and API messages with newlines, terminal escapes and
Unicode line separators are escaped in the human format and in JSON, by a real daemon."""

from __future__ import annotations

import json
from pathlib import Path

import media
import pytest
from daemon_helpers import KEY_ENV, config_document, start_cli, stop_cli, wait_sidecar, write_config

from watcher.sandbox import Fault, Sandbox

FORGED = "error forged line"
NAMES = (
    f"evil\n{FORGED}.png",
    f"cr\r{FORGED}.png",
    "\x1b[2Jclear.png",
    f"sep\u2028{FORGED}.png",
    f"nel\x85{FORGED}.png",
)


@pytest.mark.parametrize("log_format", ["human", "json"])
def test_file_names_and_api_messages_cannot_forge_log_lines(
    tmp_path: Path, sandbox: Sandbox, log_format: str
):
    drop = tmp_path / "drop"
    drop.mkdir()
    sandbox.inject(
        Fault(
            method="POST",
            path_prefix="/v1/asset",
            status=400,
            body=json.dumps({"error": f"refused\n{FORGED} \x1b[31m\u2028"}),
        )
    )
    document = config_document(
        sandbox, tmp_path / "state", [{"path": str(drop), "settle_seconds": 0.1}]
    )
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), "--log-format", log_format, env=KEY_ENV)
    try:
        (drop / "first.png").write_bytes(media.png(seed=900))  # meets the 400
        wait_sidecar(drop / "first.png", timeout=30, status="failed")
        for number, name in enumerate(NAMES):
            (drop / name).write_bytes(media.png(seed=901 + number))
        (drop / f"bad\n{FORGED}.txt").write_bytes(b"plain text\n")  # rejected: logged
        for name in NAMES:
            wait_sidecar(drop / name, timeout=30)
        code, _, log = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, log
    lines = log.split("\n")
    # Whatever reader splits the output, no line begins with a forged entry.
    for line in [*lines, *log.splitlines()]:
        assert not line.lstrip().startswith(FORGED), repr(line)
        assert "\x1b" not in line and "\u2028" not in line and "\x85" not in line
    if log_format == "json":
        records = [json.loads(line) for line in lines if line]
        files = {r.get("file", "") for r in records}
        assert str(drop / NAMES[0]) in files  # escaped on the wire, intact when read back
        assert any(FORGED in r["message"] and "\n" in r["message"] for r in records)
    else:
        assert "evil\\nerror forged line.png" in log
        assert "refused\\nerror forged line" in log
