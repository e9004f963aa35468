"""The wheels the systemd tests' virtual environment installs from, fetched once.

The container installs the project the way systemd/README.md tells an administrator, with
`pip install` reading only this folder (no index), so the tests never reach beyond 127.0.0.1.
Filling it is an install step: `.ci/run` runs this file (`python tests/systemd_wheels.py`), which
downloads the dependencies' wheels for the container's Python from the package index, once per
set of requirements.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
WHEELS = Path(os.environ.get("HEYGEN_WATCHER_TEST_WHEELS", "/var/cache/heygen-watcher-test-wheels"))
# The Python the unit's virtual environment is made with (Debian's, outside /root).
CONTAINER_PYTHON = "/usr/bin/python3"


def _requirements() -> list[str]:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    return sorted([*project["build-system"]["requires"], *project["project"]["dependencies"]])


def container_python_version() -> str:
    result = subprocess.run(
        [CONTAINER_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def wheel_folder() -> Path:
    """Where the wheels for the current requirements are (complete once `.complete` exists)."""
    version = container_python_version()
    digest = hashlib.sha256(json.dumps([version, _requirements()]).encode()).hexdigest()[:16]
    return WHEELS / f"py{version}-{digest}"


def fetch() -> Path:
    folder = wheel_folder()
    if (folder / ".complete").exists():
        return folder
    partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(partial),
            "--only-binary=:all:",
            "--python-version",
            container_python_version(),
            *_requirements(),
        ],
        check=True,
        timeout=600,
    )
    (partial / ".complete").write_text("\n".join(_requirements()) + "\n")
    try:
        partial.rename(folder)
    except OSError:  # another run got there first
        shutil.rmtree(partial, ignore_errors=True)
    return folder


if __name__ == "__main__":
    if not Path(CONTAINER_PYTHON).exists():
        print(f"no {CONTAINER_PYTHON}: the systemd tests cannot run here; nothing to fetch")
    else:
        print(f"dependency wheels in {fetch()}")
