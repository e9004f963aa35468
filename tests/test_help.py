"""Each command's --help and README.md's commands table say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from daemon_helpers import cli

README = Path(__file__).parent.parent / "README.md"
COMMAND_NAMES = (
    "run",
    "scan",
    "upload",
    "status",
    "retry",
    "check-config",
    "probe",
    "sandbox",
)


def readme_rows() -> dict[str, tuple[str, str, str]]:
    """command name → (usage, what it does, exit codes), from the README's commands table."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| command | what it does | exit codes |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        usage, what, codes = (cell.strip() for cell in line.strip().strip("|").split(" | "))
        usage = usage.strip("`")
        rows[usage.split()[0]] = (usage, what, codes)
    return rows


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_readme_lists_every_command_once():
    assert sorted(readme_rows()) == sorted(COMMAND_NAMES)


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_help_and_readme_agree(name: str):
    usage, what, codes = readme_rows()[name]
    result = cli(name, "--help")
    assert result.returncode == 0
    page = squash(result.stdout)
    assert f"exit codes: {codes}" in page
    options = page.split("options:")[1]
    for option in re.findall(r"--[a-z-]+|-c", usage):
        assert f" {option} " in options or f" {option}," in options, option
    listing = squash(cli("--help").stdout)
    assert f"{name} {what}" in listing
