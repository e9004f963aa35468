"""YAML → validated, typed, immutable configuration.

Every problem names the file, the key path and the reason; `load_config` reports them all at
once by raising `ConfigError`. Relative paths are resolved against the config file's folder.
There is deliberately no key for the API key itself: it comes from the environment or a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from watcher.config.checker import Checker, ConfigError, Problem, join_key
from watcher.config.folderconfig import (
    check_folder_overlaps,
    protocol_type_warnings,
    read_folder_settings,
)
from watcher.config.journalurl import read_journal, read_lease_seconds
from watcher.config.listen import is_loopback_host
from watcher.config.model import (
    API_DEFAULTS,
    API_KEYS,
    DEFAULTS,
    TOP_KEYS,
    UPLOAD_PROTOCOLS,
    ApiConfig,
    Config,
    FolderConfig,
)
from watcher.config.notifyconfig import read_notify
from watcher.config.templateconfig import read_templates
from watcher.config.yamlread import MAX_CONFIG_BYTES, YamlRefused, load_yaml

# The slowest pacing accepted; also what an invalid `requests_per_second` falls back to.
_MIN_RATE = 0.01

__all__ = [
    "ApiConfig",
    "Config",
    "ConfigError",
    "FolderConfig",
    "load_config",
    "parse_config",
]


def _read_api(check: Checker, raw: Any, base: Path) -> ApiConfig:
    key = "api"
    section = check.mapping(raw, key)
    check.known_keys(section, key, API_KEYS)
    defaults = API_DEFAULTS
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
    template = check.string(section, key, "asset_url_template", API_DEFAULTS.asset_url_template)
    if "${asset_id}" not in template:
        check.error(join_key(key, "asset_url_template"), "must contain ${asset_id}")
    return template


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
    defaults = read_folder_settings(
        check, top.get("defaults"), "defaults", base, FolderConfig(path=Path()), need_path=False
    )
    folders = check.each(
        top.get("folders"),
        "folders",
        lambda raw, key: read_folder_settings(check, raw, key, base, defaults, need_path=True),
    )
    if need_folders and not folders:
        check.error("folders", "at least one folder is required")
    check_folder_overlaps(check, folders)
    templates = read_templates(check, top.get("templates"), base)
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
        check.number(top, "", "rescan_seconds", DEFAULTS.rescan_seconds, minimum=0.1)
    )
    asset_cache_days = float(check.number(top, "", "asset_cache_days", DEFAULTS.asset_cache_days))
    retry_window_seconds = float(
        check.number(top, "", "retry_window_seconds", DEFAULTS.retry_window_seconds)
    )
    shutdown_timeout = float(
        check.number(top, "", "shutdown_timeout_seconds", DEFAULTS.shutdown_timeout_seconds)
    )
    quota_pause = float(
        check.number(top, "", "quota_pause_seconds", DEFAULTS.quota_pause_seconds, minimum=0.01)
    )
    metrics_listen = _read_metrics(check, top.get("metrics"))
    stall_seconds = (
        float(check.number(top, "", "stall_seconds", DEFAULTS.stall_limit_seconds, minimum=0.1))
        if top.get("stall_seconds") is not None
        else None
    )
    journal_url = read_journal(check, top)
    lease_seconds = read_lease_seconds(check, top)
    single_cpu = check.boolean(top, "", "single_cpu", DEFAULTS.single_cpu)
    ffmpeg = check.string(top, "", "ffmpeg", DEFAULTS.ffmpeg)
    convert_timeout = float(
        check.number(
            top, "", "convert_timeout_seconds", DEFAULTS.convert_timeout_seconds, minimum=0.1
        )
    )
    convert_concurrency = int(
        check.number(
            top, "", "convert_concurrency", DEFAULTS.convert_concurrency, minimum=1, integer=True
        )
    )
    notify = read_notify(check, top.get("notify"), "notify", base)
    notify_timeout = float(
        check.number(
            top, "", "notify_timeout_seconds", DEFAULTS.notify_timeout_seconds, minimum=0.1
        )
    )
    give_up = float(
        check.number(top, "", "notify_give_up_seconds", DEFAULTS.notify_give_up_seconds)
    )
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
        ffmpeg=ffmpeg,
        convert_timeout_seconds=convert_timeout,
        convert_concurrency=convert_concurrency,
        notify=notify,
        notify_timeout_seconds=notify_timeout,
        notify_give_up_seconds=give_up,
        warnings=protocol_type_warnings(source, top, api.upload_protocol, defaults, folders),
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
