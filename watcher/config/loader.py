"""YAML → validated, typed, immutable configuration.

Every problem names the file, the key path and the reason; `load_config` reports them all at
once by raising `ConfigError`. Relative paths are resolved against the config file's folder.
There is deliberately no key for the API key itself: it comes from the environment or a file.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from watcher.config.checker import Checker, ConfigError, Problem, join_key
from watcher.config.journalurl import DEFAULT_LEASE_SECONDS, read_journal, read_lease_seconds
from watcher.config.mediatypes import (
    DEFAULT_TYPES,
    MAJOR_TYPES,
    PROTOCOL_TYPES,
    SUPPORTED_TYPES,
)
from watcher.config.templates import (
    SAMPLE_VALUES,
    RenderError,
    Template,
    check_placeholder,
    placeholders_in,
    render,
)
from watcher.config.yamlread import MAX_CONFIG_BYTES, YamlRefused, load_yaml

UPLOAD_PROTOCOLS = ("v1-presigned", "v1-upload", "v3-direct", "v3-multipart")
DEFAULT_BASE_URL = "https://api.heygen.com"
DEFAULT_UPLOAD_BASE_URL = "https://upload.heygen.com"
DEFAULT_ASSET_URL_TEMPLATE = "https://files.heygen.ai/asset/${asset_id}"
MB = 1000 * 1000
# The slowest pacing accepted; also what an invalid `requests_per_second` falls back to.
_MIN_RATE = 0.01
# The seed gives "typically 10–100 MB max, varying by type"; images sit at the lower end.
DEFAULT_MAX_BYTES = {"image": 50 * MB, "video": 100 * MB, "audio": 100 * MB}

__all__ = [
    "ApiConfig",
    "Config",
    "ConfigError",
    "FolderConfig",
    "load_config",
    "parse_config",
]


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
_API_DEFAULTS = ApiConfig()
_DEFAULTS = Config(source="", api=_API_DEFAULTS, state_dir=Path())


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_api(check: Checker, raw: Any, base: Path) -> ApiConfig:
    key = "api"
    section = check.mapping(raw, key)
    check.known_keys(section, key, API_KEYS)
    defaults = _API_DEFAULTS
    base_url = _read_key_host(check, section, key, "base_url", defaults.base_url)
    upload_base_url = _read_key_host(
        check, section, key, "upload_base_url", defaults.upload_base_url
    )
    key_file = section.get("api_key_file")
    rps = section.get("requests_per_second")
    return ApiConfig(
        base_url=base_url,
        upload_base_url=upload_base_url,
        api_key_env=check.string(section, key, "api_key_env", defaults.api_key_env),
        api_key_file=check.path(key_file, join_key(key, "api_key_file"), base)
        if key_file is not None
        else None,
        upload_protocol=check.string(
            section, key, "upload_protocol", defaults.upload_protocol, choices=UPLOAD_PROTOCOLS
        ),
        asset_url_template=_read_asset_url_template(check, section, key),
        timeout_seconds=check.number(
            section, key, "timeout_seconds", defaults.timeout_seconds, minimum=0.1
        ),
        max_attempts=check.number(
            section, key, "max_attempts", defaults.max_attempts, minimum=1, integer=True
        ),
        concurrency=check.number(
            section, key, "concurrency", defaults.concurrency, minimum=1, integer=True
        ),
        adaptive_concurrency=check.boolean(
            section, key, "adaptive_concurrency", defaults.adaptive_concurrency
        ),
        requests_per_second=check.number(
            section, key, "requests_per_second", _MIN_RATE, minimum=_MIN_RATE
        )
        if rps is not None
        else None,
        max_retry_after_seconds=check.number(
            section, key, "max_retry_after_seconds", defaults.max_retry_after_seconds
        ),
        backoff_base_seconds=check.number(
            section, key, "backoff_base_seconds", defaults.backoff_base_seconds
        ),
        backoff_max_seconds=check.number(
            section, key, "backoff_max_seconds", defaults.backoff_max_seconds
        ),
        probe_base_seconds=check.number(
            section, key, "probe_base_seconds", defaults.probe_base_seconds, minimum=0.01
        ),
        probe_max_seconds=check.number(
            section, key, "probe_max_seconds", defaults.probe_max_seconds, minimum=0.01
        ),
    )


def _read_key_host(
    check: Checker, section: Mapping[str, Any], key: str, name: str, default: str
) -> str:
    """A URL the API key is sent to: https, or plain http for a loopback host only."""
    url = str(check.string(section, key, name, default)).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        check.error(join_key(key, name), f"must be an https:// URL, got {url!r}")
    elif parts.scheme == "http" and not is_loopback_host(parts.hostname):
        check.error(
            join_key(key, name),
            "plain http:// is only allowed for loopback hosts (the key would travel in clear)",
        )
    return url


def _read_asset_url_template(check: Checker, section: Mapping[str, Any], key: str) -> str:
    template = check.string(section, key, "asset_url_template", _API_DEFAULTS.asset_url_template)
    if "${asset_id}" not in template:
        check.error(join_key(key, "asset_url_template"), "must contain ${asset_id}")
    return template


def _read_max_bytes(
    check: Checker, raw: Any, key: str, inherited: Mapping[str, int]
) -> Mapping[str, int]:
    section = check.mapping(raw, key)
    check.known_keys(section, key, MAJOR_TYPES)
    merged = dict(inherited)
    for major, value in section.items():
        if major in MAJOR_TYPES:
            merged[major] = check.size(value, join_key(key, major), inherited[major])
    return merged


def _read_folder_settings(
    check: Checker, raw: Any, key: str, base: Path, inherited: FolderConfig, *, need_path: bool
) -> FolderConfig:
    section = check.mapping(raw, key)
    check.known_keys(section, key, FOLDER_KEYS)
    path: Path | None = inherited.path
    if "path" in section:
        path = check.path(section["path"], join_key(key, "path"), base)
        if path is not None and need_path and not path.is_dir():
            reason = "is not a folder" if path.exists() else "folder does not exist"
            check.error(join_key(key, "path"), f"{reason}: {path}")
    elif need_path:
        check.error(join_key(key, "path"), "is required")
    types = check.string_list(section, key, "types", inherited.types)
    for index, content_type in enumerate(types):
        if content_type not in SUPPORTED_TYPES:
            check.error(
                join_key(join_key(key, "types"), index),
                f"unsupported type {content_type!r} (supported: {', '.join(SUPPORTED_TYPES)})",
            )
    sidecar_dir = inherited.sidecar_dir
    if section.get("sidecar_dir") is not None:
        sidecar_dir = check.path(section["sidecar_dir"], join_key(key, "sidecar_dir"), base)
    return FolderConfig(
        path=path or Path(),
        recursive=check.boolean(section, key, "recursive", inherited.recursive),
        settle_seconds=float(
            check.number(section, key, "settle_seconds", inherited.settle_seconds)
        ),
        types=types,
        max_bytes=_read_max_bytes(
            check, section.get("max_bytes"), join_key(key, "max_bytes"), inherited.max_bytes
        ),
        ignore=check.string_list(section, key, "ignore", inherited.ignore),
        polling=check.boolean(section, key, "polling", inherited.polling),
        trust_close_write=check.boolean(
            section, key, "trust_close_write", inherited.trust_close_write
        ),
        on_reject=check.string(
            section, key, "on_reject", inherited.on_reject, choices=("sidecar", "ignore")
        ),
        sidecar_dir=sidecar_dir,
        move_to=_read_after_upload(check, section, key, base, inherited.move_to),
        template=check.string(section, key, "template", inherited.template),
    )


def _read_after_upload(
    check: Checker, section: Mapping[str, Any], key: str, base: Path, inherited: Path | None
) -> Path | None:
    if "after_upload" not in section:
        return inherited
    value = section["after_upload"]
    key = join_key(key, "after_upload")
    if value == "keep":
        return None
    if isinstance(value, Mapping) and set(value) == {"move"}:
        return check.path(value["move"], join_key(key, "move"), base)
    check.error(key, "must be 'keep' or a mapping {move: DIR}")
    return inherited


def _check_folder_overlaps(check: Checker, folders: list[FolderConfig]) -> None:
    """Two watches over the same file would race to upload it; refuse overlapping folders."""
    for i, first in enumerate(folders):
        for j, second in enumerate(folders):
            if i < j and (
                first.path == second.path
                or (first.recursive and second.path.is_relative_to(first.path))
                or (second.recursive and first.path.is_relative_to(second.path))
            ):
                check.error(
                    f"folders[{j}].path",
                    f"overlaps folders[{i}] ({first.path}); each file must be watched once",
                )
        if (
            first.move_to is not None
            and first.recursive
            and first.move_to.is_relative_to(first.path)
        ):
            check.error(
                f"folders[{i}].after_upload.move",
                "must not be inside the watched folder (moved files would be seen again)",
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


def _read_templates(check: Checker, raw: Any, base: Path) -> dict[str, Template]:
    section = check.mapping(raw, "templates")
    return {
        str(name): _read_template(check, str(name), body, base) for name, body in section.items()
    }


def _read_metrics(check: Checker, raw: Any) -> str | None:
    """``metrics: {listen: "127.0.0.1:9464"}``; off when absent."""
    from watcher.config.listen import parse_listen

    section = check.mapping(raw, "metrics")
    check.known_keys(section, "metrics", ("listen",))
    listen = check.string(section, "metrics", "listen", None)
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as error:
            check.error("metrics.listen", str(error))
    return listen


def _protocol_type_warnings(
    source: str, top: Mapping[str, Any], protocol: str, defaults: FolderConfig, folders: list[Any]
) -> tuple[str, ...]:
    """Types a folder asks for that its upload protocol cannot carry: every such file would be
    refused. Only types named in the file count: the default list is not a request."""
    takes = PROTOCOL_TYPES[protocol]
    asked: list[tuple[str, tuple[str, ...]]] = []
    if "types" in (top.get("defaults") or {}):
        asked.append(("defaults.types", defaults.types))
    for index, (raw, folder) in enumerate(zip(top.get("folders") or [], folders, strict=True)):
        if "types" in raw:
            asked.append((f"folders[{index}].types", folder.types))
    warnings = []
    for key, types in asked:
        missing = [content_type for content_type in types if content_type not in takes]
        if missing:
            reason = (
                f"{', '.join(missing)} cannot be uploaded with api.upload_protocol {protocol} "
                f"(it takes {', '.join(takes)}); such files will be refused"
            )
            warnings.append(str(Problem(source, key, reason)))
    return tuple(warnings)


def default_state_dir() -> Path:
    systemd_state = os.environ.get("STATE_DIRECTORY")
    if systemd_state:
        # systemd may pass several colon-separated directories; the first one is ours.
        return Path(systemd_state.split(":")[0])
    return Path("~/.local/state/heygen-watcher").expanduser()


def parse_config(data: Any, source: str, base: Path, *, need_folders: bool = True) -> Config:
    """Validate an already-parsed YAML document. ``need_folders=False`` serves `upload`."""
    check = Checker(source)
    top = check.mapping(data, "")
    check.known_keys(top, "", TOP_KEYS)
    api = _read_api(check, top.get("api"), base)
    state_dir = default_state_dir()
    if top.get("state_dir") is not None:
        state_dir = check.path(top["state_dir"], "state_dir", base) or state_dir
    defaults = _read_folder_settings(
        check, top.get("defaults"), "defaults", base, FolderConfig(path=Path()), need_path=False
    )
    folders = check.each(
        top.get("folders"),
        "folders",
        lambda raw, key: _read_folder_settings(check, raw, key, base, defaults, need_path=True),
    )
    if need_folders and not folders:
        check.error("folders", "at least one folder is required")
    _check_folder_overlaps(check, folders)
    templates = _read_templates(check, top.get("templates"), base)
    for index, folder in enumerate(folders):
        if folder.template is not None and folder.template not in templates:
            known = ", ".join(sorted(templates)) or "none defined"
            check.error(
                f"folders[{index}].template",
                f"no template named {folder.template!r} (templates: {known})",
            )
    if defaults.template is not None and defaults.template not in templates:
        check.error("defaults.template", f"no template named {defaults.template!r}")
    rescan_seconds = float(
        check.number(top, "", "rescan_seconds", _DEFAULTS.rescan_seconds, minimum=0.1)
    )
    asset_cache_days = float(check.number(top, "", "asset_cache_days", _DEFAULTS.asset_cache_days))
    retry_window_seconds = float(
        check.number(top, "", "retry_window_seconds", _DEFAULTS.retry_window_seconds)
    )
    shutdown_timeout = float(
        check.number(top, "", "shutdown_timeout_seconds", _DEFAULTS.shutdown_timeout_seconds)
    )
    quota_pause = float(
        check.number(top, "", "quota_pause_seconds", _DEFAULTS.quota_pause_seconds, minimum=0.01)
    )
    metrics_listen = _read_metrics(check, top.get("metrics"))
    stall_seconds = (
        float(check.number(top, "", "stall_seconds", _DEFAULTS.stall_limit_seconds, minimum=0.1))
        if top.get("stall_seconds") is not None
        else None
    )
    journal_url = read_journal(check, top)
    lease_seconds = read_lease_seconds(check, top)
    single_cpu = check.boolean(top, "", "single_cpu", _DEFAULTS.single_cpu)
    check.raise_if_any()
    return Config(
        source=source,
        api=api,
        state_dir=state_dir,
        defaults=defaults,
        folders=tuple(folders),
        rescan_seconds=rescan_seconds,
        asset_cache_days=asset_cache_days,
        retry_window_seconds=retry_window_seconds,
        shutdown_timeout_seconds=shutdown_timeout,
        quota_pause_seconds=quota_pause,
        templates=templates,
        metrics_listen=metrics_listen,
        stall_seconds=stall_seconds,
        journal_url=journal_url,
        lease_seconds=lease_seconds,
        single_cpu=single_cpu,
        warnings=_protocol_type_warnings(source, top, api.upload_protocol, defaults, folders),
    )


def load_config(path: str | Path, *, need_folders: bool = True) -> Config:
    path = Path(path)
    source = str(path)
    try:
        # Read with a bound: a config larger than this is refused, not read into memory.
        with open(path, "rb") as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
    except OSError as error:
        raise ConfigError([Problem(source, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem(source, "", "is not UTF-8 text")]) from None
    try:
        data = load_yaml(text)
    except YamlRefused as error:
        raise ConfigError([Problem(source, error.where, f"refused: {error.reason}")]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([Problem(source, where, f"invalid YAML: {problem}")]) from None
    return parse_config(data, source, path.resolve().parent, need_folders=need_folders)
