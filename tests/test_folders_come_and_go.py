"""Drop folders (and their subfolders) moved away, deleted and made again at once, or replaced
are watched again within seconds, with a log line, whatever the timing; and every folder is
watched by one shared observer."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import media
import pytest
from daemon_helpers import (
    KEY_ENV,
    config_document,
    make_config,
    running,
    start_cli,
    stop_cli,
    wait_sidecar,
    write_config,
)

from watcher.sandbox import Sandbox


def aside(path: Path) -> Path:
    """A free name beside ``path`` to move it to."""
    number = 0
    while path.with_name(f"{path.name}-old{number}").exists():
        number += 1
    return path.with_name(f"{path.name}-old{number}")


def moved_away_and_made_again(drop: Path) -> None:
    os.rename(drop, aside(drop))
    drop.mkdir()


def deleted_and_made_again(drop: Path) -> None:
    shutil.rmtree(drop)
    drop.mkdir()


def replaced_by_another(drop: Path) -> None:
    other = drop.with_name(f"{drop.name}-new")
    other.mkdir()
    os.rename(drop, aside(drop))
    os.rename(other, drop)


@pytest.mark.parametrize(
    "change", [moved_away_and_made_again, deleted_and_made_again, replaced_by_another]
)
def test_a_drop_folder_that_comes_and_goes_at_once(
    tmp_path: Path, drop: Path, sandbox: Sandbox, change: Callable[[Path], None]
):
    # No rescan to fall back on: only a watch on the new folder can see the file.
    document = config_document(
        sandbox,
        tmp_path / "state",
        [{"path": str(drop), "settle_seconds": 0.1}],
        rescan_seconds=3600,
    )
    config = write_config(tmp_path / "config.yaml", document)
    process = start_cli("run", "-c", str(config), env=KEY_ENV)
    try:
        (drop / "before.png").write_bytes(media.png(seed=700))
        wait_sidecar(drop / "before.png", timeout=30)
        change(drop)
        (drop / "after.png").write_bytes(media.png(seed=701))
        assert wait_sidecar(drop / "after.png", timeout=20)["status"] == "uploaded"
        # Again, right away: the new watch is a real one, not a one-off scan.
        change(drop)
        (drop / "again.png").write_bytes(media.png(seed=702))
        assert wait_sidecar(drop / "again.png", timeout=20)["status"] == "uploaded"
        code, _, log = stop_cli(process)
    finally:
        process.kill()
    assert code == 0, log
    assert "watching the new one" in log or "watching it again" in log, log


def test_a_subfolder_replaced_at_once(tmp_path: Path, drop: Path, sandbox: Sandbox):
    (drop / "sub").mkdir()
    config = make_config(
        sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}], rescan_seconds=3600
    )
    with running(config):
        for number, change in enumerate(
            (moved_away_and_made_again, deleted_and_made_again, replaced_by_another)
        ):
            change(drop / "sub")
            path = drop / "sub" / f"{number}.png"
            path.write_bytes(media.png(seed=710 + number))
            assert wait_sidecar(path, timeout=20)["status"] == "uploaded"


def test_one_observer_watches_every_folder(tmp_path: Path, sandbox: Sandbox):
    folders = [tmp_path / f"drop{n}" for n in range(4)]
    for folder in folders:
        folder.mkdir()
    config = make_config(
        sandbox, tmp_path, [{"path": str(f), "settle_seconds": 0.1} for f in folders]
    )
    with running(config):
        observers = [t for t in threading.enumerate() if t.name.startswith("watch")]
        assert [t.name for t in observers] == ["watch"]
        for number, folder in enumerate(folders):
            (folder / "a.png").write_bytes(media.png(seed=720 + number))
        for folder in folders:
            wait_sidecar(folder / "a.png")


def test_folders_moved_in_are_walked_by_two_threads_at_most(
    tmp_path: Path, drop: Path, sandbox: Sandbox
):
    outside = tmp_path / "outside"
    outside.mkdir()
    trees = []
    for number in range(12):
        tree = outside / f"t{number}"
        tree.mkdir()
        (tree / "a.png").write_bytes(media.png(seed=730 + number))
        trees.append(tree)
    config = make_config(sandbox, tmp_path, [{"path": str(drop), "settle_seconds": 0.1}])
    with running(config):
        for tree in trees:
            os.rename(tree, drop / tree.name)
        names = {t.name for t in threading.enumerate() if t.name.startswith("scan-tree")}
        for tree in trees:
            wait_sidecar(drop / tree.name / "a.png", timeout=20)
        names |= {t.name for t in threading.enumerate() if t.name.startswith("scan-tree")}
    assert 1 <= len(names) <= 2, names
