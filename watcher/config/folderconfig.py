"""The `defaults` and `folders` sections: each folder's settings (inheriting from
`defaults`), the check that no two watches overlap, and warnings for types a folder asks for
that its upload protocol cannot carry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watcher.config.checker import Checker, Problem, join_key
from watcher.config.mediatypes import MAJOR_TYPES, PROTOCOL_TYPES, SUPPORTED_TYPES
from watcher.config.model import FOLDER_KEYS, FolderConfig
from watcher.config.notifyconfig import read_notify


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


def read_folder_settings(
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
        convert=check.boolean(section, key, "convert", inherited.convert),
        notify=(
            read_notify(check, section["notify"], join_key(key, "notify"), base)
            if "notify" in section
            else inherited.notify
        ),
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


def check_folder_overlaps(check: Checker, folders: list[FolderConfig]) -> None:
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


def protocol_type_warnings(
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
