"""The `templates` section: each video template's keys, its body checked by rendering it
against sample values, and its API paths."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watcher.config.checker import Checker, join_key
from watcher.config.model import TEMPLATE_KEYS
from watcher.config.templates import (
    SAMPLE_VALUES,
    RenderError,
    Template,
    check_placeholder,
    placeholders_in,
    render,
)


def _read_api_path(
    check: Checker, section: Mapping[str, Any], key: str, name: str, default: str | None
) -> str | None:
    """An API path such as /v2/video/generate: never a URL, so the key only goes to the API."""
    value = check.string(section, key, name, default)
    if value is not None and (
        not value.startswith("/") or "://" in value or value.startswith("//")
    ):
        check.error(join_key(key, name), f"must be an API path starting with '/', got {value!r}")
    return value


def _read_template(check: Checker, name: str, raw: Any, base: Path) -> Template:
    key = join_key("templates", name)
    section = check.mapping(raw, key)
    check.known_keys(section, key, TEMPLATE_KEYS)
    body = check.mapping(section.get("body"), join_key(key, "body"))
    unknown = False
    for placeholder in sorted(placeholders_in(body)):
        reason = check_placeholder(placeholder)
        if reason is not None:
            unknown = True
            check.error(join_key(key, "body"), f"template {name!r}: {reason}")
    if not unknown:  # rendering would only report the same unknown placeholder again
        try:
            # Render against sample values so that malformed bodies fail here, not at 3 a.m.
            render(body, SAMPLE_VALUES, where=join_key(key, "body"), environ=_AnyEnvironment())
        except RenderError as error:
            check.error(join_key(key, "body"), str(error))
    status_endpoint = _read_api_path(check, section, key, "status_endpoint", None)
    if status_endpoint is not None and "{video_id}" not in status_endpoint:
        check.error(join_key(key, "status_endpoint"), "must contain {video_id}")
    download_to = section.get("download_to")
    defaults = Template(name=name)
    return Template(
        name=name,
        endpoint=_read_api_path(check, section, key, "endpoint", defaults.endpoint) or "",
        body=body,
        wait=check.boolean(section, key, "wait", defaults.wait),
        initial_delay_seconds=float(
            check.number(section, key, "initial_delay_seconds", defaults.initial_delay_seconds)
        ),
        poll_interval_seconds=float(
            check.number(
                section,
                key,
                "poll_interval_seconds",
                defaults.poll_interval_seconds,
                minimum=0.01,
            )
        ),
        timeout_minutes=float(
            check.number(section, key, "timeout_minutes", defaults.timeout_minutes, minimum=0.001)
        ),
        status_endpoint=status_endpoint,
        download_to=check.path(download_to, join_key(key, "download_to"), base)
        if download_to is not None
        else None,
        script_wait_seconds=float(
            check.number(section, key, "script_wait_seconds", defaults.script_wait_seconds)
        ),
    )


class _AnyEnvironment(dict[str, str]):
    """For checking: every environment variable "exists" (the service's may differ from ours)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"<{key}>"


def read_templates(check: Checker, raw: Any, base: Path) -> dict[str, Template]:
    section = check.mapping(raw, "templates")
    return {
        str(name): _read_template(check, str(name), body, base) for name, body in section.items()
    }
