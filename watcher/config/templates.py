"""Video templates: a YAML body with ``${placeholders}``, rendered as data, never evaluated.

``${name}`` is replaced by a value; ``$$`` is a literal dollar; any other ``$`` stays as it is.
A string that is exactly one placeholder takes the value's own type (``${size}`` stays a
number). Only the names below exist; ``${env.NAME}`` reads the environment variable NAME.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLACEHOLDERS = (
    "asset_id",
    "asset_url",
    "filename",
    "stem",
    "content_type",
    "size",
    "sha256",
    "folder",
    "script",
)
_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")
SAMPLE_VALUES: dict[str, Any] = {
    "asset_id": "0123456789abcdef0123456789abcdef",
    "asset_url": "https://files.heygen.ai/asset/0123456789abcdef0123456789abcdef",
    "filename": "sample photo.jpg",
    "stem": "sample photo",
    "content_type": "image/jpeg",
    "size": 123456,
    "sha256": "0" * 64,
    "folder": "/srv/drop",
    "script": "Hello from a sample script.",
}


class RenderError(Exception):
    """A placeholder that cannot be filled: names the placeholder and where it sits."""


@dataclass(frozen=True)
class Template:
    name: str
    endpoint: str = "/v2/video/generate"
    body: Mapping[str, Any] = field(default_factory=dict)
    wait: bool = True
    initial_delay_seconds: float = 120.0
    poll_interval_seconds: float = 45.0
    timeout_minutes: float = 30.0
    status_endpoint: str | None = None
    download_to: Path | None = None
    script_wait_seconds: float = 10.0

    @property
    def uses_script(self) -> bool:
        return "script" in placeholders_in(self.body)

    def status_path(self, video_id: str) -> str:
        from urllib.parse import quote

        # The id comes from the API: quoted so it can only ever be one path segment.
        return self.status_template.replace("{video_id}", quote(video_id, safe=""))

    @property
    def status_template(self) -> str:
        if self.status_endpoint:
            return self.status_endpoint
        if self.endpoint.startswith("/v3/"):
            return "/v3/videos/{video_id}"
        if self.endpoint.startswith("/v1/"):
            return "/v1/video_status.get?video_id={video_id}"
        return "/v2/videos/{video_id}"


def placeholders_in(value: Any) -> set[str]:
    """Every placeholder name used anywhere in a body."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(
            match.group(1) for match in _TOKEN.finditer(value) if match.group(1) is not None
        )
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= placeholders_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= placeholders_in(item)
    return found


def check_placeholder(name: str) -> str | None:
    """None if ``name`` is a known placeholder, else the reason it is not."""
    if name in PLACEHOLDERS or _ENV_NAME.match(name):
        return None
    known = ", ".join(PLACEHOLDERS) + ", env.NAME"
    return f"unknown placeholder ${{{name}}} (known: {known})"


def _lookup(name: str, values: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> Any:
    env = _ENV_NAME.match(name)
    if env:
        variable = env.group(1)
        if variable not in environ:
            raise RenderError(f"{where}: ${{{name}}}: environment variable {variable} is not set")
        return environ[variable]
    if name not in values:
        raise RenderError(f"{where}: {check_placeholder(name) or f'no value for ${{{name}}}'}")
    return values[name]


def _render_string(
    text: str, values: Mapping[str, Any], where: str, environ: Mapping[str, str]
) -> Any:
    whole = _TOKEN.fullmatch(text)
    if whole and whole.group(1) is not None:
        return _lookup(whole.group(1), values, where, environ)

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "$"
        return str(_lookup(match.group(1), values, where, environ))

    return _TOKEN.sub(replace, text)


def render(
    body: Any,
    values: Mapping[str, Any],
    *,
    where: str = "body",
    environ: Mapping[str, str] | None = None,
) -> Any:
    """A copy of ``body`` with every placeholder filled; raises `RenderError`."""
    environ = os.environ if environ is None else environ
    if isinstance(body, str):
        return _render_string(body, values, where, environ)
    if isinstance(body, Mapping):
        return {
            key: render(item, values, where=f"{where}.{key}", environ=environ)
            for key, item in body.items()
        }
    if isinstance(body, list):
        return [
            render(item, values, where=f"{where}[{index}]", environ=environ)
            for index, item in enumerate(body)
        ]
    return body


def values_for(
    *,
    asset_id: str,
    asset_url: str,
    path: Path,
    content_type: str,
    size: int,
    sha256: str,
    folder: Path,
    script: str | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "asset_id": asset_id,
        "asset_url": asset_url,
        "filename": path.name,
        "stem": path.stem,
        "content_type": content_type,
        "size": size,
        "sha256": sha256,
        "folder": str(folder),
    }
    if script is not None:
        values["script"] = script
    return values
