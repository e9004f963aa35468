"""Where the API key comes from, and the rules that keep it secret.

The key is read from (first match wins): ``api.api_key_file``; the systemd credential
``$CREDENTIALS_DIRECTORY/heygen_api_key``; the environment variable ``api.api_key_env``.
It is never part of the config file, never logged, and only `origin` (where it was read from)
ever appears in messages.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from watcher.config import ApiConfig

CREDENTIAL_NAME = "heygen_api_key"


class ApiKeyError(Exception):
    """The key is missing, unreadable or stored unsafely. The message never contains it."""


@dataclass(frozen=True)
class ApiKey:
    value: str = field(repr=False)
    origin: str

    def __str__(self) -> str:
        return f"<API key from {self.origin}>"


def _read_key_file(path: Path, origin: str) -> ApiKey:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ApiKeyError(f"{origin}: file does not exist") from None
    except OSError as error:
        raise ApiKeyError(f"{origin}: cannot read: {error.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        raise ApiKeyError(
            f"{origin}: permissions {mode:04o} are too open; the key file must be readable "
            f"by its owner only (chmod 600 {path})"
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ApiKeyError(f"{origin}: cannot read: {reason}") from None
    if not value:
        raise ApiKeyError(f"{origin}: file is empty")
    return ApiKey(value, origin)


def key_file_path(api: ApiConfig) -> Path | None:
    """The file the key would come from, if any: watched for changes by the daemon."""
    if api.api_key_file is not None:
        return api.api_key_file
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).exists():
        return Path(credentials) / CREDENTIAL_NAME
    return None


def load_api_key(api: ApiConfig) -> ApiKey:
    path = key_file_path(api)
    if path is not None:
        origin = (
            f"api_key_file {path}"
            if api.api_key_file is not None
            else f"systemd credential {CREDENTIAL_NAME}"
        )
        return _read_key_file(path, origin)
    value = os.environ.get(api.api_key_env, "").strip()
    if not value:
        raise ApiKeyError(
            f"no API key: set the environment variable {api.api_key_env} "
            "or api.api_key_file in the config"
        )
    return ApiKey(value, f"environment variable {api.api_key_env}")
