"""One delivery attempt of one event to one target, and what it came to.

Webhooks follow the Standard Webhooks specification: ``webhook-id`` (the event's id, the same
on every retry), ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of
"id.timestamp.body">``), signed by the `standardwebhooks` library with the target's
``whsec_`` secret, read from its file at each attempt (a rotated secret is used at once).
Redirects are not followed. Any other scheme goes to Apprise with a short human message.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from watcher.config.notifyconfig import NotifyTarget, read_secret

# Apprise logs what its plugins do, URLs included: they hold credentials.
logging.getLogger("apprise").setLevel(logging.CRITICAL)

# One keep-alive session per delivery thread: a connection per event costs more CPU than the
# delivery itself, and that CPU is the uploads'.
_sessions = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxies from the environment: the URL is the receiver
        _sessions.session = session
    return session


@dataclass(frozen=True)
class Delivery:
    ok: bool
    error: str = ""
    retry_after: float | None = None  # the receiver asked to wait this long


def deliver(target: NotifyTarget, event_id: str, body: str, timeout: float) -> Delivery:
    if target.is_webhook:
        return _webhook(target, event_id, body, timeout)
    return _apprise(target, body)


def _webhook(target: NotifyTarget, event_id: str, body: str, timeout: float) -> Delivery:
    from standardwebhooks.webhooks import Webhook

    if target.secret_file is None:
        return Delivery(False, "no secret_file to sign with")
    try:
        secret = read_secret(target.secret_file)
    except OSError as error:
        return Delivery(False, f"cannot read the secret: {error.strerror}")
    now = datetime.datetime.now(tz=datetime.UTC)
    signature = Webhook(secret).sign(event_id, now, body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "heygen-watcher",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    try:
        answer = _session().post(
            target.url,
            data=body.encode("utf-8"),
            headers=headers,
            timeout=(min(timeout, 5.0), timeout),
            allow_redirects=False,
        )
    except requests.Timeout:
        return Delivery(False, f"no answer within {timeout:g}s")
    except requests.ConnectionError:
        return Delivery(False, "connection refused or lost")
    except requests.RequestException as error:
        return Delivery(False, type(error).__name__)
    with answer:
        if 200 <= answer.status_code < 300:
            return Delivery(True)
        return Delivery(
            False, f"HTTP {answer.status_code}", _retry_after(answer.headers.get("Retry-After"))
        )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.datetime.now(tz=datetime.UTC)).total_seconds())


def _apprise(target: NotifyTarget, body: str) -> Delivery:
    try:
        import apprise
    except ImportError:
        return Delivery(False, "Apprise is not installed: pip install 'heygen-watcher[notify]'")
    title, text = message(json.loads(body))
    sender = apprise.Apprise()
    if not sender.add(target.url):
        return Delivery(False, "Apprise does not understand the URL")
    if sender.notify(title=title, body=text):
        return Delivery(True)
    return Delivery(False, "Apprise could not deliver it (see the target's service)")


_VERBS = {
    "uploaded": "uploaded to HeyGen",
    "rejected": "refused",
    "failed": "failed to upload",
    "video_completed": "video ready",
    "video_failed": "video failed",
}


def message(document: dict[str, Any]) -> tuple[str, str]:
    """A short human message for an event body: title and text (file, result, link)."""
    data = document.get("data", {})
    event = str(data.get("event", ""))
    path = str(data.get("path", ""))
    name = path.rsplit("/", 1)[-1]
    sidecar = data.get("sidecar") or {}
    title = f"heygen-watcher: {name} {_VERBS.get(event, event)}"
    lines = [f"{path}: {_VERBS.get(event, event)}"]
    if sidecar.get("asset_id"):
        lines.append(f"asset {sidecar['asset_id']}: {sidecar.get('url', '')}")
    video = sidecar.get("video") or {}
    if video.get("url"):
        lines.append(f"video: {video['url']}")
    if sidecar.get("error"):
        lines.append(f"why: {sidecar['error']}")
    return title, "\n".join(lines)
