"""Configuration defaults live in one place, the dataclasses of `watcher.config.model`: the YAML
readers and the allowed keys come from them, and config.example.yaml and the reference tables of
docs/configuration.md are checked against them here."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from watcher.config import model
from watcher.config.checker import Checker
from watcher.config.loader import parse_config
from watcher.config.model import ApiConfig, Config, FolderConfig
from watcher.config.templates import Template

ROOT = Path(__file__).parent.parent
# The reference tables live in the configuration doc, linked from the README.
REFERENCE = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
EXAMPLE_TEXT = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)

# Keys whose default is not a plain value of the dataclass (computed, required, or a list the
# docs describe in words): only their presence is checked.
DESCRIBED = {
    "state_dir",
    "path",
    "types",
    "max_bytes",
    "status_endpoint",
    "templates",
    "defaults",
    "folders",
}


def yaml_defaults(cls: type, keys: tuple[str, ...], renamed: dict[str, str]) -> dict[str, Any]:
    """YAML key → the dataclass default (MISSING for required fields)."""
    by_field = {field: key for key, field in renamed.items()}
    result = {}
    for item in fields(cls):
        key = by_field.get(item.name, item.name)
        if key not in keys:
            continue
        if item.default is not MISSING:
            result[key] = item.default
        elif item.default_factory is not MISSING:
            result[key] = item.default_factory()
        else:
            result[key] = MISSING
    return result


SECTIONS = {
    "api": (ApiConfig, model.API_KEYS, {}),
    "top": (Config, model.TOP_KEYS, model.TOP_YAML_FIELDS),
    "folder": (FolderConfig, model.FOLDER_KEYS, model.FOLDER_YAML_FIELDS),
    "template": (Template, model.TEMPLATE_KEYS, {}),
}
README_TABLES = {
    "api": "### `api`",
    "top": "### Top level",
    "folder": "### `defaults` and each entry of `folders`",
    "template": "| template key | default | meaning |",
}


def readme_table(heading: str) -> dict[str, str]:
    """key → its default cell, from the first table after ``heading``."""
    start = REFERENCE.index(heading)
    table_start = REFERENCE.index("| ", start) if not heading.startswith("|") else start
    table = REFERENCE[table_start:].split("\n\n")[0]
    rows: dict[str, str] = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        keys = re.findall(r"`([a-z_]+)`", cells[0])
        defaults = [part.strip() for part in cells[1].split(", ")] if len(keys) > 1 else [cells[1]]
        for key, default in zip(keys, defaults, strict=True):
            rows[key] = default
    return rows


def same_default(cell: str, value: Any, key: str) -> bool:
    cell = cell.strip("`")
    if key == "after_upload":
        return value is None and cell == "keep"
    if value is None:
        return cell in ("—", "none", "off", "derived")
    if isinstance(value, bool):
        return cell == str(value).lower()
    if isinstance(value, (int, float)):
        return float(cell) == float(value)
    if isinstance(value, dict):
        return cell == "{}" and not value
    if isinstance(value, tuple):
        return cell == "[]" and not value
    return cell == str(value)


def test_the_readers_take_every_default_from_the_dataclasses(tmp_path: Path):
    document = {"folders": [{"path": str(tmp_path)}], "templates": {"t": {}}}
    config = parse_config(document, "c.yaml", tmp_path)
    assert config.api == ApiConfig()
    assert config.folders[0] == FolderConfig(path=tmp_path)
    assert config.templates["t"] == Template(name="t")
    reference = Config(source="c.yaml", api=ApiConfig(), state_dir=config.state_dir)
    for item in fields(Config):
        if item.name not in ("source", "api", "defaults", "folders", "templates", "state_dir"):
            assert getattr(config, item.name) == getattr(reference, item.name), item.name


# Every module that reads a section of the YAML.
READERS = ("loader.py", "folderconfig.py", "templateconfig.py", "journalurl.py")


@pytest.mark.parametrize("module", READERS)
def test_no_default_is_written_twice_in_the_readers(module: str):
    source = (ROOT / "watcher" / "config" / module).read_text(encoding="utf-8")
    assert "check.number(" in source
    # Numbers handed to the readers as defaults must come from the dataclasses, not literals.
    literals = re.findall(r'check\.number\([^)]*?"[a-z_]+",\s*(\d+(?:\.\d+)?)\b', source)
    assert literals == []


@pytest.mark.parametrize("section", SECTIONS)
def test_the_readme_tables_list_every_key_with_its_default(section: str):
    cls, keys, renamed = SECTIONS[section]
    table = readme_table(README_TABLES[section])
    defaults = yaml_defaults(cls, keys, renamed)
    defaults.pop("api", None)  # a section of its own, with its own table
    assert sorted(table) == sorted(defaults)
    for key, value in defaults.items():
        if key not in DESCRIBED:
            assert same_default(table[key], value, key), (key, table[key], value)


# Values the example sets on purpose to show the syntax (not defaults).
EXAMPLE_CHOICES = {"state_dir", "requests_per_second", "metrics", "ignore", "download_to"}


def example_value(key: str, value: Any) -> Any:
    if key == "after_upload":
        return None if value == "keep" else value
    if key in ("types", "notify"):
        return tuple(value)
    if key == "max_bytes":
        return {major: Checker("example").size(size, key, 0) for major, size in value.items()}
    return value


@pytest.mark.parametrize("section", SECTIONS)
def test_the_example_shows_every_key_with_its_default(section: str):
    cls, keys, renamed = SECTIONS[section]
    shown = {
        "api": EXAMPLE["api"],
        "top": EXAMPLE,
        "folder": EXAMPLE["defaults"],
        "template": EXAMPLE["templates"]["background"],
    }[section]
    for key, default in yaml_defaults(cls, keys, renamed).items():
        written = re.search(rf"^\s*#?\s*(- )?{key}:", EXAMPLE_TEXT, re.MULTILINE)
        assert written, f"config.example.yaml does not show {key}"
        if key in shown and key not in EXAMPLE_CHOICES and default is not MISSING:
            if default is None or key in ("templates", "folders", "defaults", "body"):
                continue
            assert example_value(key, shown[key]) == default, (key, shown[key], default)
