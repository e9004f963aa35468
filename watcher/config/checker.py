"""A small, strict reader for YAML mappings that collects every error with its key path.

`check-config` must print every problem at once, so readers record errors and return a
fallback instead of raising at the first one. Each error names the file, the key path
(``folders[2].max_bytes.video``) and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

T = TypeVar("T")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.reason}"


# A problem quotes values from the file: never a whole (perhaps alias-expanded) value, and
# never a line break that would make one problem look like two.
MAX_REASON_CHARS = 500


def _one_line(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


class ConfigError(Exception):
    """One or more problems in a configuration file; `str()` lists them all."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def join_key(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


@dataclass
class Checker:
    """Collects problems for one file."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def error(self, key: str, reason: str) -> None:
        self.problems.append(Problem(self.file, _one_line(key), _one_line(reason)))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    # -- structure ---------------------------------------------------------------------------
    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(key, f"must be a mapping, got {_type_name(value)}")
            return {}
        return value

    def known_keys(self, value: Mapping[str, Any], key: str, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for name in value:
            if name not in allowed:
                hint = ", ".join(sorted(allowed))
                self.error(join_key(key, str(name)), f"unknown key (known keys: {hint})")

    # -- scalars -----------------------------------------------------------------------------
    def boolean(self, section: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = section.get(name, default)
        if not isinstance(value, bool):
            self.error(join_key(key, name), f"must be true or false, got {_type_name(value)}")
            return default
        return value

    def number(
        self,
        section: Mapping[str, Any],
        key: str,
        name: str,
        default: float,
        *,
        minimum: float = 0.0,
        integer: bool = False,
    ) -> Any:
        value = section.get(name, default)
        ok_types = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            kind = "an integer" if integer else "a number"
            self.error(join_key(key, name), f"must be {kind}, got {_type_name(value)}")
            return default
        if value < minimum:
            self.error(join_key(key, name), f"must be at least {minimum:g}, got {value}")
            return default
        return value

    @overload
    def string(
        self,
        section: Mapping[str, Any],
        key: str,
        name: str,
        default: str,
        *,
        choices: Iterable[str] | None = None,
    ) -> str: ...

    @overload
    def string(
        self,
        section: Mapping[str, Any],
        key: str,
        name: str,
        default: None,
        *,
        choices: Iterable[str] | None = None,
    ) -> str | None: ...

    def string(
        self,
        section: Mapping[str, Any],
        key: str,
        name: str,
        default: str | None,
        *,
        choices: Iterable[str] | None = None,
    ) -> str | None:
        value = section.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.error(join_key(key, name), f"must be a non-empty string, got {_type_name(value)}")
            return default
        if choices is not None and value not in choices:
            self.error(join_key(key, name), f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        return value

    def string_list(
        self, section: Mapping[str, Any], key: str, name: str, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = section.get(name, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(item, str) and item for item in value
        ):
            self.error(join_key(key, name), "must be a list of non-empty strings")
            return default
        return tuple(value)

    def size(self, value: Any, key: str, default: int) -> int:
        """Bytes, as an integer or a string such as ``"100 MB"`` or ``"1.5GiB"``."""
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str):
            match = _SIZE.match(value)
            if match:
                unit = (match.group(2) or "").lower()
                if unit in _SIZE_UNITS:
                    return int(float(match.group(1)) * _SIZE_UNITS[unit])
        self.error(key, f"must be a positive size such as 104857600 or '100 MB', got {value!r}")
        return default

    def path(self, value: Any, key: str, base: Path) -> Path | None:
        if not isinstance(value, str) or not value:
            self.error(key, f"must be a path (a non-empty string), got {_type_name(value)}")
            return None
        expanded = Path(value).expanduser()
        return expanded if expanded.is_absolute() else (base / expanded)

    def each(self, value: Any, key: str, read_item: Callable[[Any, str], T | None]) -> list[T]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, f"must be a list, got {_type_name(value)}")
            return []
        items = []
        for index, item in enumerate(value):
            result = read_item(item, join_key(key, index))
            if result is not None:
                items.append(result)
        return items
