"""`check-config` (offline, or `--online` with one read-only call), `probe` and `status`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from watcher.commands.configpath import resolve_config_path
from watcher.commands.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from watcher.config import Config, load_config
from watcher.config.apikey import ApiKey

if TYPE_CHECKING:
    import argparse


def cmd_status(args: argparse.Namespace) -> int:
    from watcher.commands.status import collect, render

    report = collect(load_config(resolve_config_path(args.config)))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from watcher.config.preflight import preflight, read_write_paths_line

    config = load_config(resolve_config_path(args.config))
    for warning in config.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    result = preflight(config)
    problems = list(result.problems)
    if args.online and result.key is not None:
        problem = _online_check(config, result.key)
        if problem is not None:
            problems.append(problem)
    if args.online and not problems:
        problems += _test_notifications(config)
    for problem in problems:
        print(f"heygen-watcher: config error: {problem}", file=sys.stderr)
    if args.for_service:
        print(read_write_paths_line(result.written))
    if problems:
        return EXIT_USAGE
    online = "; the API accepted it" if args.online else ""
    _say_how_folders_convert(config)
    print(
        f"OK: {config.source}: {len(config.folders)} folder(s); "
        f"API key from {result.key_origin}{online}"
    )
    return EXIT_OK


def _test_notifications(config: Config) -> list[str]:
    """`--online`: one test event to each notification target, and what it answered."""
    import json
    import secrets
    import time

    from watcher.notify.send import deliver
    from watcher.state.sidecar import iso_from_epoch

    targets = [(f"notify[{i}]", t) for i, t in enumerate(config.notify)]
    for index, folder in enumerate(config.folders):
        targets += [(f"folders[{index}].notify[{i}]", t) for i, t in enumerate(folder.notify)]
    problems = []
    for key, target in targets:
        body = json.dumps(
            {
                "type": "test",
                "timestamp": iso_from_epoch(time.time()),
                "data": {"event": "test", "path": "", "sidecar": None},
            }
        )
        result = deliver(
            target, f"msg_{secrets.token_hex(16)}", body, config.notify_timeout_seconds
        )
        if result.ok:
            print(f"{key} ({target.shown}): the test notification was delivered")
        else:
            problems.append(
                f"{config.source}: {key}.url: the test notification to {target.shown} was not "
                f"delivered ({result.error})"
            )
    return problems


def _say_how_folders_convert(config: Config) -> None:
    """Which folders convert, with which tools; a missing tool is a warning (such files are
    refused with a sidecar saying what to install), not an error."""
    converting = [(index, folder) for index, folder in enumerate(config.folders) if folder.convert]
    if not converting:
        return
    from watcher.convert.converter import available_tools

    tools = available_tools(config.ffmpeg)
    for index, folder in converting:
        print(f"folders[{index}] ({folder.path}) converts what HeyGen refuses before uploading")
    if tools.images is not None:
        print(f"  images (HEIC, AVIF, WebP, TIFF, GIF, BMP) with {tools.images}")
    else:
        print(f"WARNING: images will be refused: {tools.images_missing}", file=sys.stderr)
    if tools.ffmpeg is not None:
        where = f"{tools.ffmpeg.origin}: {tools.ffmpeg.ffmpeg}"
        print(f"  audio and video with ffmpeg {tools.ffmpeg.version} ({where})")
    else:
        print(f"WARNING: audio and video will be refused: {tools.ffmpeg_missing}", file=sys.stderr)


def _online_check(config: Config, key: ApiKey) -> str | None:
    """One authenticated, read-only call: the status of an asset id that cannot exist.

    `GET /v3/assets/statuses` answers 200 with `not_found` for an unknown id when the key is
    good, and 401 when it is not: unlike a 404 from a single-resource read, a 200 also proves
    the base URL is the API's."""
    from watcher.heygen.client import HeyGenClient
    from watcher.heygen.errors import ApiError, AuthError

    client = HeyGenClient(config.api, key)
    try:
        client.request(
            "GET", "/v3/assets/statuses", params={"asset_ids": "heygen-watcher-check"}, retry=False
        )
    except AuthError as error:
        return f"{config.source}: api: the API refused the key from {key.origin} ({error})"
    except ApiError as error:
        base = config.api.base_url
        return f"{config.source}: api.base_url: {base} did not answer as HeyGen does ({error})"
    finally:
        client.close()
    return None


def cmd_probe(args: argparse.Namespace) -> int:
    from watcher.commands.probe import probe, render
    from watcher.config.apikey import load_api_key

    config = load_config(resolve_config_path(args.config), need_folders=False)
    results = probe(config.api, load_api_key(config.api))
    for line in render(results, config.api.upload_protocol):
        print(line)
    configured = next(r for r in results if r.protocol == config.api.upload_protocol)
    return EXIT_OK if configured.ok else EXIT_FAILED
