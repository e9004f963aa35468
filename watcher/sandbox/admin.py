"""Admin routes under /_sandbox/ on the API listener: no key, not recorded, not faulted."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from watcher.sandbox.context import Context
from watcher.sandbox.envelopes import json_response
from watcher.sandbox.exchange import Exchange, Response
from watcher.sandbox.faults import Fault
from watcher.sandbox.validation import ApiError, read_json_object

PREFIX = "/_sandbox/"


def _plain(record: Any) -> dict[str, Any]:
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in dataclasses.asdict(record).items()
    }


def _ok(payload: Any = None) -> Response:
    return json_response(200, {"ok": True, "data": payload})


def _add_fault(ctx: Context, exchange: Exchange) -> Response:
    try:
        fault = Fault.from_json(read_json_object(exchange))
    except (TypeError, ValueError) as error:
        raise ApiError(400, f"bad fault: {error}") from None
    ctx.state.inject(fault)
    return _ok(dataclasses.asdict(fault))


def _clear_faults(ctx: Context, exchange: Exchange) -> Response:
    ctx.state.clear_faults()
    return _ok()


def _requests(ctx: Context, exchange: Exchange) -> Response:
    return _ok([_plain(seen) for seen in ctx.state.requests()])


def _assets(ctx: Context, exchange: Exchange) -> Response:
    return _ok({key: _plain(asset) for key, asset in ctx.state.assets().items()})


def _videos(ctx: Context, exchange: Exchange) -> Response:
    return _ok({key: _plain(video) for key, video in ctx.state.videos().items()})


def _reset(ctx: Context, exchange: Exchange) -> Response:
    ctx.state.reset()
    return _ok()


def _expire_slots(ctx: Context, exchange: Exchange) -> Response:
    ctx.signer.expire_all()
    return _ok()


_TUNABLE = (
    "url_ttl_seconds",
    "latency_seconds",
    "video_pending_seconds",
    "video_processing_seconds",
    "batch_processing_seconds",
    "video_url_ttl_seconds",
    "asset_processing_seconds",
    "rate_limit_per_second",
)
_COUNTS = ("batch_page_size", "rate_limit_burst")


def _settings(ctx: Context, exchange: Exchange) -> Response:
    """Change run-time tunables of a sandbox running in another process (benchmarks)."""
    changes = read_json_object(exchange)
    settable = (*_TUNABLE, *_COUNTS)
    for name, value in changes.items():
        if name not in settable:
            raise ApiError(400, f"unknown setting {name!r} (settable: {', '.join(settable)})")
        if name in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ApiError(400, f"{name} must be a positive integer, got {value!r}")
            setattr(ctx.settings, name, value)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ApiError(400, f"{name} must be a non-negative number, got {value!r}")
        setattr(ctx.settings, name, float(value))
    return _ok({name: getattr(ctx.settings, name) for name in settable})


ROUTES = {
    ("POST", "settings"): _settings,
    ("POST", "faults"): _add_fault,
    ("DELETE", "faults"): _clear_faults,
    ("GET", "requests"): _requests,
    ("GET", "assets"): _assets,
    ("GET", "videos"): _videos,
    ("POST", "reset"): _reset,
    ("POST", "expire-slots"): _expire_slots,
}


def handle(ctx: Context, exchange: Exchange) -> Response:
    name = exchange.path.removeprefix(PREFIX)
    route = ROUTES.get((exchange.method, name))
    if route is None:
        known = any(known_name == name for _, known_name in ROUTES)
        status = 405 if known else 404
        return json_response(status, {"ok": False, "error": f"{exchange.method} {exchange.path}"})
    try:
        return route(ctx, exchange)
    except ApiError as error:
        return json_response(error.status, {"ok": False, "error": error.message})
