"""The `notify` lists (top level, and per folder adding to it): who is told when a file or a
video is done, and how. A webhook (`http://`, `https://`) is a signed Standard Webhooks POST;
every other scheme is handed to Apprise (`mailto://`, `slack://`, `ntfy://`, …)."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from watcher.config.checker import Checker, join_key
from watcher.config.listen import is_loopback_host

EVENTS = ("uploaded", "rejected", "failed", "video_completed", "video_failed")
WEBHOOK_SCHEMES = ("http", "https")
NOTIFY_KEYS = ("url", "events", "secret_file")


@dataclass(frozen=True)
class NotifyTarget:
    url: str
    events: tuple[str, ...] = EVENTS
    secret_file: Path | None = None

    @property
    def is_webhook(self) -> bool:
        return urlsplit(self.url).scheme in WEBHOOK_SCHEMES

    @property
    def shown(self) -> str:
        """The URL as logs and `status` may show it: scheme and host, never credentials,
        paths or tokens (Apprise URLs carry them in every part)."""
        return masked_url(self.url)


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if _port(parts) else ""
    return f"{parts.scheme}://{host}{port}/…" if parts.scheme else "…"


def _port(parts: Any) -> int | None:
    try:
        return int(parts.port) if parts.port else None
    except ValueError:
        return None


def read_notify(check: Checker, raw: Any, key: str, base: Path) -> tuple[NotifyTarget, ...]:
    return tuple(check.each(raw, key, lambda item, where: _read_target(check, item, where, base)))


def _read_target(check: Checker, raw: Any, key: str, base: Path) -> NotifyTarget | None:
    section = check.mapping(raw, key)
    check.known_keys(section, key, NOTIFY_KEYS)
    url = check.string(section, key, "url", None)
    if url is None:
        check.error(join_key(key, "url"), "is required")
        return None
    events = check.string_list(section, key, "events", EVENTS)
    for index, event in enumerate(events):
        if event not in EVENTS:
            check.error(
                join_key(join_key(key, "events"), index),
                f"unknown event {event!r} (events: {', '.join(EVENTS)})",
            )
    secret_file = None
    if section.get("secret_file") is not None:
        secret_file = check.path(section["secret_file"], join_key(key, "secret_file"), base)
    target = NotifyTarget(url, tuple(events), secret_file)
    problem = url_problem(target)
    if problem is not None:
        check.error(join_key(key, "url"), problem)
        return None
    if target.is_webhook:
        if secret_file is None:
            check.error(join_key(key, "secret_file"), "is required for a webhook (it signs it)")
            return None
        secret_problem = secret_file_problem(secret_file)
        if secret_problem is not None:
            check.error(join_key(key, "secret_file"), secret_problem)
    return target


def url_problem(target: NotifyTarget) -> str | None:
    """Why this URL cannot be notified, or None. Never quotes the URL (it may hold a token)."""
    parts = urlsplit(target.url)
    if not parts.scheme:
        return "has no scheme (https://…, or an Apprise URL such as mailto://…)"
    if target.is_webhook:
        if not parts.hostname:
            return f"{parts.scheme}:// needs a host"
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            return "plain http:// is refused except for loopback hosts; use https://"
        return None
    try:
        import apprise
    except ImportError:
        return (
            f"{parts.scheme}:// is delivered by Apprise, which is not installed: "
            "pip install 'heygen-watcher[notify]'"
        )
    if not apprise.Apprise().add(target.url):
        return f"Apprise does not understand this {parts.scheme}:// URL"
    return None


def secret_file_problem(path: Path) -> str | None:
    try:
        info = path.stat()
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        return f"permissions {mode:04o} of {path} are too open; chmod 600 it"
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return f"cannot read {path} as text"
    if not secret.startswith("whsec_") or len(secret) < 16:
        return f"{path} must hold a Standard Webhooks secret: whsec_ followed by base64"
    return None


def read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()
