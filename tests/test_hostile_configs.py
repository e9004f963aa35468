"""Configs that cannot hurt: a billion laughs, a 10,000-deep nesting, a self-containing alias
and a huge file each end in exit 2 with one clear line, on `check-config` and `run`, in
real subprocesses (a reload to such a file: `test_service.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_helpers import KEY_ENV, cli

from watcher.config import ConfigError, load_config


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    lines.append("folders: *a9")  # 10^9 values where a list of folders is read
    return "\n".join(lines) + "\n"


def deep_nesting(depth: int = 10_000) -> str:
    return "folders: " + "[" * depth + "]" * depth + "\n"


HOSTILE = {
    "billion-laughs": (billion_laughs(), "more than 100000 values once aliases are expanded"),
    "deep-nesting": (deep_nesting(), "nested more than 64 levels deep"),
    "deep-mapping": ("t: " + "{k: " * 5000 + "v" + "}" * 5000 + "\n", "nested more than 64"),
    "self-alias": ("folders: &a [*a]\n", "an alias refers to a value that contains it"),
    "huge": ("# " + "x" * (2 << 20) + "\nfolders: []\n", "larger than 1048576 bytes"),
}


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    text, reason = HOSTILE[request.param]
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    return path, reason


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_every_command_refuses_a_hostile_config_in_one_line(
    hostile: tuple[Path, str], command: str
):
    path, reason = hostile
    result = cli(command, "-c", str(path), env=KEY_ENV, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], result.stderr
    assert "Traceback" not in result.stderr and len(lines[0]) < 600


def test_problems_never_quote_a_whole_value(tmp_path: Path):
    values = ", ".join(f'"v{n}"' for n in range(5000))
    path = tmp_path / "big-value.yaml"
    path.write_text(f"api: {{upload_protocol: [{values}]}}\nfolders: []\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert all(len(str(problem)) < 700 for problem in raised.value.problems)
