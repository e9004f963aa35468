"""What the fleet tests share: one daemon's config on the shared journal, bursts of distinct
files, and looks straight into the shared database."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import media
import psycopg
from daemon_helpers import config_document, read_sidecar

from watcher.config import Config, parse_config
from watcher.sandbox import Sandbox


def fleet_document(
    sandbox: Sandbox,
    tmp_path: Path,
    drop: Path,
    url: str,
    name: str,
    template: str | None = None,
    **top: Any,
) -> dict[str, Any]:
    """One daemon's config: its own state directory, the shared journal, the same folder."""
    folder: dict[str, Any] = {"path": str(drop), "settle_seconds": 0.1, "trust_close_write": True}
    if template is not None:
        folder["template"] = template
    return config_document(
        sandbox,
        tmp_path / f"state-{name}",
        [folder],
        journal=url,
        rescan_seconds=3600,
        **top,
    )


def fleet_config(
    sandbox: Sandbox,
    tmp_path: Path,
    drop: Path,
    url: str,
    name: str,
    template: str | None = None,
    **top: Any,
) -> Config:
    document = fleet_document(sandbox, tmp_path, drop, url, name, template, **top)
    return parse_config(document, f"{name}.yaml", tmp_path)


def uploaded(path: Path) -> bool:
    try:
        return bool(read_sidecar(path)["status"] == "uploaded")
    except (OSError, ValueError, KeyError):
        return False


def assets_per_content(sandbox: Sandbox) -> Counter[str]:
    return Counter(asset.sha256 for asset in sandbox.assets.values())


def write_burst(drop: Path, count: int, offset: int = 0) -> dict[Path, str]:
    """``count`` distinct PNGs, each written in one go (as `cp` does); path → sha256."""
    written = {}
    for number in range(offset, offset + count):
        # Width and seed together make every file's bytes distinct (the seed alone wraps).
        data = media.png(width=4 + number // 256, seed=number % 256)
        path = drop / f"img-{number:04d}.png"
        path.write_bytes(data)
        written[path] = hashlib.sha256(data).hexdigest()
    return written


def claimed_uploading(url: str, pid: int) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('files')").fetchone() == (None,):
            return []  # the daemon has not created the schema yet
        rows = conn.execute(
            "SELECT path FROM files WHERE owner LIKE %s AND state = 'uploading'",
            (f"%:{pid}:%",),
        ).fetchall()
    return [row[0] for row in rows]


def shared_pause_left(url: str, kind: str) -> float:
    """Seconds left of the fleet's pause of ``kind`` as recorded in the database."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('pauses')").fetchone() == (None,):
            return 0.0
        row = conn.execute(
            "SELECT until - EXTRACT(EPOCH FROM clock_timestamp()) FROM pauses WHERE kind = %s",
            (kind,),
        ).fetchone()
    return float(row[0]) if row else 0.0
