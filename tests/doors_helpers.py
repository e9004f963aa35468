"""Helpers for the tests of every command's promises (test_doors_*.py)."""

from __future__ import annotations

from pathlib import Path

from daemon_helpers import config_document, write_config

from watcher.sandbox import Sandbox


def folder_config(tmp_path: Path, sandbox: Sandbox, **folder: object) -> tuple[Path, Path]:
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    document = config_document(sandbox, tmp_path / "state", [{"path": str(drop), **folder}])
    return write_config(tmp_path / "c.yaml", document), drop


def api_only(tmp_path: Path, sandbox: Sandbox) -> Path:
    document = config_document(sandbox, tmp_path / "state", [])
    return write_config(tmp_path / "api.yaml", document)
