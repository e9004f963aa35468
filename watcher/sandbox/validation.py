"""Strict reading of JSON request bodies: every refusal names the field it is about."""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import urlsplit

from watcher.sandbox.exchange import BodyError, Exchange

JSON_BODY_LIMIT = 8 << 20


class ApiError(Exception):
    """A refusal; the router renders it in the envelope of the route's API generation."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def invalid(param: str, problem: str) -> ApiError:
    return ApiError(400, f"{param} {problem}", "invalid_request", param)


def body_error(error: BodyError) -> ApiError:
    if error.kind in ("chunked", "missing_length"):
        return ApiError(411, f"{error}: send the body with a Content-Length", "length_required")
    if error.kind == "too_large":
        return ApiError(413, str(error), "payload_too_large")
    return ApiError(400, str(error), "invalid_request")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_object(exchange: Exchange) -> dict[str, Any]:
    """The request body, which must be a JSON object sent as application/json."""
    media_type = (exchange.header("Content-Type") or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(400, "Content-Type must be application/json", "invalid_request")
    try:
        raw = exchange.read_body(JSON_BODY_LIMIT)
    except BodyError as error:
        raise body_error(error) from None
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as error:
        raise ApiError(400, f"body is not valid JSON: {error}", "invalid_request") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", "invalid_request")
    return data


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Fields:
    """Typed access to one JSON object; ``prefix`` is its path for error messages."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    @classmethod
    def of(cls, value: Any, param: str) -> Fields:
        if not isinstance(value, dict):
            raise invalid(param, f"must be an object, not {_describe(value)}")
        return cls(value, param)

    def param(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        # An explicit null counts as absent, as JSON APIs commonly treat it.
        return self.data.get(key) is not None

    def _present(self, key: str, required: bool) -> bool:
        if self.has(key):
            return True
        if required:
            raise invalid(self.param(key), "is required")
        return False

    def string(self, key: str, *, required: bool = True, non_empty: bool = True) -> str | None:
        if not self._present(key, required):
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise invalid(self.param(key), f"must be a string, not {_describe(value)}")
        if non_empty and not value.strip():
            raise invalid(self.param(key), "must be a non-empty string")
        return value

    def text(self, key: str) -> str:
        """A required non-empty string."""
        return cast(str, self.string(key))

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in allowed:
            raise invalid(self.param(key), f"must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def integer(self, key: str, *, required: bool = True, minimum: int | None = None) -> int | None:
        if not self._present(key, required):
            return None
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(self.param(key), f"must be an integer, not {_describe(value)}")
        if minimum is not None and value < minimum:
            raise invalid(self.param(key), f"must be at least {minimum}")
        return value

    def boolean(self, key: str) -> bool | None:
        if not self._present(key, required=False):
            return None
        value = self.data[key]
        if not isinstance(value, bool):
            raise invalid(self.param(key), f"must be a boolean, not {_describe(value)}")
        return value

    def object(self, key: str) -> Fields:
        self._present(key, required=True)
        return Fields.of(self.data[key], self.param(key))

    def array(self, key: str) -> list[Any]:
        self._present(key, required=True)
        value = self.data[key]
        if not isinstance(value, list):
            raise invalid(self.param(key), f"must be a list, not {_describe(value)}")
        return value

    def url(self, key: str) -> str:
        value = self.text(key)
        split = urlsplit(value)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise invalid(self.param(key), "must be an absolute http(s) URL")
        return value

    def one_of(self, keys: tuple[str, ...]) -> str:
        """The single key of ``keys`` that is present."""
        present = [key for key in keys if self.has(key)]
        if len(present) != 1:
            raise invalid(self.param(keys[0]), f"give exactly one of {', '.join(keys)}")
        return present[0]
