"""The API listener: authentication, routing, and errors in each route's own envelope."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from watcher.sandbox import admin, assets, videos
from watcher.sandbox.context import Context
from watcher.sandbox.envelopes import api_error_response, raw_body_response, reason
from watcher.sandbox.exchange import Exchange, Response
from watcher.sandbox.faults import Fault
from watcher.sandbox.validation import ApiError

Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _route(method: str, pattern: str, handler: Handler) -> Route:
    return Route(method, re.compile(pattern), handler)


ROUTES = (
    _route("POST", r"/v1/asset", assets.create_v1_asset),
    _route("POST", r"/v3/assets/direct-uploads", assets.create_direct_upload),
    _route("POST", r"/v3/assets/direct-uploads/batches", assets.create_batch),
    _route("POST", r"/v3/assets/complete/batches", assets.complete_batch),
    _route("GET", r"/v3/assets/batches/(?P<batch_id>[^/]+)", assets.get_batch),
    _route("GET", r"/v3/assets/statuses", assets.get_statuses),
    _route("POST", r"/v3/assets/(?P<asset_id>[^/]+)/complete", assets.complete_asset),
    _route("POST", r"/v3/assets", assets.upload_multipart),
    _route("POST", r"/v2/video/generate", videos.generate_v2),
    _route("POST", r"/v2/template/(?P<template_id>[^/]+)/generate", videos.generate_template),
    _route("POST", r"/v3/videos", videos.create_v3_video),
    _route("POST", r"/v3/templates/(?P<template_id>[^/]+)", videos.generate_v3_template),
    _route("GET", r"/v2/videos/(?P<video_id>[^/]+)", videos.get_v2_video),
    _route("GET", r"/v3/videos/(?P<video_id>[^/]+)", videos.get_v3_video),
    _route("GET", r"/v1/video_status\.get", videos.get_v1_status),
)


def find_route(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    allowed = []
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        if route.method == method:
            return route.handler, match.groupdict()
        allowed.append(route.method)
    if allowed:
        raise ApiError(405, f"{method} is not allowed on {path}", "method_not_allowed")
    raise ApiError(404, f"no such endpoint: {path}", "not_found")


class ApiApp:
    name = "api"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def admin(self, exchange: Exchange) -> Response | None:
        if exchange.path.startswith(admin.PREFIX):
            return admin.handle(self.ctx, exchange)
        return None

    def rate_key(self, exchange: Exchange) -> str | None:
        return exchange.header("X-Api-Key") or ""

    def handle(self, exchange: Exchange) -> Response:
        try:
            self._authenticate(exchange)
            handler, params = find_route(exchange.method, exchange.path)
            return handler(self.ctx, exchange, **params)
        except ApiError as error:
            return api_error_response(
                exchange.path, error.status, error.message, error.code, error.param
            )

    def fault_response(self, exchange: Exchange, fault: Fault) -> Response:
        status = fault.status or 500
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.body is not None:
            return raw_body_response(status, fault.body, headers)
        return api_error_response(exchange.path, status, reason(status), headers=headers)

    def internal_error(self, exchange: Exchange) -> Response:
        return api_error_response(exchange.path, 500, "internal error")

    def _authenticate(self, exchange: Exchange) -> None:
        given = exchange.header("X-Api-Key")
        expected = self.ctx.settings.api_key
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "invalid or missing X-Api-Key", "unauthorized")
