"""The configuration's typed, immutable shape: the dataclasses of each section, their
defaults (written once, here) and the YAML keys each section allows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from watcher.config.journalurl import DEFAULT_LEASE_SECONDS
from watcher.config.mediatypes import DEFAULT_TYPES
from watcher.config.notifyconfig import NotifyTarget
from watcher.config.templates import Template

UPLOAD_PROTOCOLS = ("v1-presigned", "v1-upload", "v3-direct", "v3-multipart")
DEFAULT_BASE_URL = "https://api.heygen.com"
DEFAULT_UPLOAD_BASE_URL = "https://upload.heygen.com"
DEFAULT_ASSET_URL_TEMPLATE = "https://files.heygen.ai/asset/${asset_id}"
MB = 1000 * 1000
# The seed gives "typically 10–100 MB max, varying by type"; images sit at the lower end.
DEFAULT_MAX_BYTES = {"image": 50 * MB, "video": 100 * MB, "audio": 100 * MB}


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    upload_base_url: str = DEFAULT_UPLOAD_BASE_URL
    api_key_env: str = "HEYGEN_API_KEY"
    api_key_file: Path | None = None
    upload_protocol: str = "v1-presigned"
    asset_url_template: str = DEFAULT_ASSET_URL_TEMPLATE
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    # The most uploads in flight; how many actually are is found at run time (the adaptive
    # limit starts at 4). 16 keeps a link with 100 ms round trips busy at well over 100 small
    # files a second, more than two cores sniff and journal, with one thread and one
    # keep-alive connection per slot.
    concurrency: int = 16
    # Adapt the uploads in flight (up to `concurrency`) and the request rate to HeyGen's
    # answers; off: always `concurrency`, and only 429 pauses slow down.
    adaptive_concurrency: bool = True
    requests_per_second: float | None = None
    max_retry_after_seconds: float = 300.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    # While the API is unreachable: probe after this long, doubling up to the maximum (which
    # bounds how long after its return uploads resume).
    probe_base_seconds: float = 1.0
    probe_max_seconds: float = 10.0


@dataclass(frozen=True)
class FolderConfig:
    path: Path
    recursive: bool = True
    settle_seconds: float = 2.0
    types: tuple[str, ...] = DEFAULT_TYPES
    max_bytes: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_BYTES))
    ignore: tuple[str, ...] = ()
    polling: bool = False
    trust_close_write: bool = False
    on_reject: str = "sidecar"
    sidecar_dir: Path | None = None
    move_to: Path | None = None
    template: str | None = None
    # Convert what HeyGen refuses (HEIC, MOV, M4A…) into a type it takes (`watcher.convert`).
    convert: bool = False
    # Told as well as the top level's `notify` when this folder's files are done.
    notify: tuple[NotifyTarget, ...] = ()

    def max_bytes_for(self, content_type: str) -> int | None:
        return self.max_bytes.get(content_type.split("/", 1)[0])


@dataclass(frozen=True)
class Config:
    source: str
    api: ApiConfig
    state_dir: Path
    defaults: FolderConfig = field(default_factory=lambda: FolderConfig(path=Path()))
    folders: tuple[FolderConfig, ...] = ()
    rescan_seconds: float = 60.0
    asset_cache_days: float = 30.0
    retry_window_seconds: float = 3600.0
    shutdown_timeout_seconds: float = 20.0
    quota_pause_seconds: float = 600.0
    templates: Mapping[str, Template] = field(default_factory=dict)
    metrics_listen: str | None = None
    stall_seconds: float | None = None
    # None: the SQLite journal in state_dir; else a postgresql:// URL shared by a fleet.
    journal_url: str | None = None
    # How long a claim on a file outlives its daemon's last renewal (shared journal only).
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # Keep the daemon's threads on one CPU (see `watcher.service.cpus`).
    single_cpu: bool = True
    # Conversion: the ffmpeg to run (None: the system's on PATH, else the bundled one), how
    # long one conversion may take, and how many run at once.
    ffmpeg: str | None = None
    convert_timeout_seconds: float = 600.0
    convert_concurrency: int = 1
    # Who is told when a file or a video is done (`watcher.config.notifyconfig`), how long one
    # delivery may take, and after how long of failing deliveries an event is given up (dead).
    notify: tuple[NotifyTarget, ...] = ()
    notify_timeout_seconds: float = 10.0
    notify_give_up_seconds: float = 86400.0
    # Not errors, but worth saying: check-config prints them, the daemon logs them at start.
    warnings: tuple[str, ...] = ()

    @property
    def stall_limit_seconds(self) -> float:
        """How long a busy worker may go without a sign of life before it counts as wedged:
        longer than any single wait it can legitimately be in (a socket timeout, a clamped
        Retry-After), unless configured."""
        if self.stall_seconds is not None:
            return self.stall_seconds
        api = self.api
        return (
            2 * api.timeout_seconds + max(api.max_retry_after_seconds, api.backoff_max_seconds) + 60
        )

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.sqlite3"

    def template_for(self, folder: FolderConfig) -> Template | None:
        return self.templates.get(folder.template) if folder.template else None

    def notify_for(self, folder: FolderConfig, event: str) -> tuple[NotifyTarget, ...]:
        """Everyone to tell of ``event`` for a file of ``folder``."""
        return tuple(t for t in (*self.notify, *folder.notify) if event in t.events)

    def folder_of(self, folder_path: str) -> FolderConfig:
        """The configured folder a journal row belongs to; one that left the configuration
        keeps the default rules, so its files can still be recorded."""
        for folder in self.folders:
            if str(folder.path) == folder_path:
                return folder
        return FolderConfig(path=Path(folder_path))


# The allowed keys of each section are the dataclasses' fields, named as in YAML where the two
# differ (YAML key → field).
TOP_YAML_FIELDS = {"metrics": "metrics_listen", "journal": "journal_url"}
FOLDER_YAML_FIELDS = {"after_upload": "move_to"}
# Fields that are not configuration keys: where the config came from, what checking found.
_NOT_KEYS = ("source", "warnings")


def yaml_keys(
    cls: type, renamed: Mapping[str, str], hidden: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The YAML keys of a config dataclass, in field order."""
    by_field = {field_name: key for key, field_name in renamed.items()}
    return tuple(by_field.get(f.name, f.name) for f in fields(cls) if f.name not in hidden)


TOP_KEYS = yaml_keys(Config, TOP_YAML_FIELDS, _NOT_KEYS)
API_KEYS = yaml_keys(ApiConfig, {})
FOLDER_KEYS = yaml_keys(FolderConfig, FOLDER_YAML_FIELDS)
TEMPLATE_KEYS = yaml_keys(Template, {}, ("name",))
# Every default, from the dataclasses (the readers never repeat one).
API_DEFAULTS = ApiConfig()
DEFAULTS = Config(source="", api=API_DEFAULTS, state_dir=Path())
