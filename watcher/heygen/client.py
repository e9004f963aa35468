"""The HeyGen API client: sessions, the key, envelopes, timeouts and retries in one place.

Call sites ask for data (`request`) or move bytes (`put_to_storage`, `open_download`); they
never see `requests` exceptions, only the `watcher.heygen.errors` hierarchy.

The key goes to two hosts only: the API (``api.base_url``) and the upload host
(``api.upload_base_url``, for the one-request upload). Presigned storage URLs and downloads go
through a second session that never sees it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3.exceptions

from watcher.config import ApiConfig
from watcher.config.apikey import ApiKey
from watcher.heygen.body import FileBody
from watcher.heygen.envelope import (
    HttpAnswer,
    dumps_json,
    parse_api_response,
    raise_for_storage,
)
from watcher.heygen.errors import ApiError, ResponseLost, TransientError
from watcher.heygen.reachability import Reachability
from watcher.heygen.retry import RetryPolicy, with_retries
from watcher.heygen.throttle import Throttle
from watcher.heygen.transport import (
    BASE_HEADERS,
    Answer,
    Transport,
    TransportError,
    new_session,
)

log = logging.getLogger(__name__)

# Connecting should be quick even on a bad day; reading may legitimately take longer.
MAX_CONNECT_TIMEOUT_SECONDS = 10.0
# A probe asks the API something cheap that every account may ask (the read model of an asset
# that does not exist answers `not_found`); any HTTP answer below 500 means "reachable".
PROBE_PATH = "/v3/assets/statuses"
PROBE_PARAMS = {"asset_ids": "heygen-watcher-probe"}
PROBE_TIMEOUT_SECONDS = 10.0


def _never_sent(error: requests.RequestException) -> bool:
    """True when the request certainly did not reach the server (safe to send again)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = error.args[0] if error.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _network_error(error: requests.RequestException, what: str, replay_safe: bool) -> ApiError:
    """A download's failure (downloads still go through requests)."""
    return _failure(
        what,
        timed_out=isinstance(error, requests.Timeout),
        detail=type(error).__name__,
        maybe_sent=not replay_safe and not _never_sent(error),
    )


def _transport_failure(error: TransportError, what: str, replay_safe: bool) -> ApiError:
    return _failure(
        what,
        timed_out=error.timed_out,
        detail=error.name,
        maybe_sent=not replay_safe and not error.never_sent,
    )


def _failure(what: str, *, timed_out: bool, detail: str, maybe_sent: bool) -> ApiError:
    kind = "timed out" if timed_out else "connection failed"
    if maybe_sent:
        return ResponseLost(f"{what}: {kind} ({detail}); the request may have been carried out")
    return TransientError(f"{what}: {kind} ({detail})")


class HeyGenClient:
    def __init__(
        self,
        api: ApiConfig,
        key: ApiKey,
        *,
        throttle: Throttle | None = None,
        policy: RetryPolicy | None = None,
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.api = api
        self._key = key
        # Told whenever a request moves (a block sent, a bounded wait begun): a watchdog
        # outside the client tells a slow upload from a wedged one by it.
        self.on_progress = on_progress
        self.throttle = throttle or Throttle(
            api.requests_per_second,
            on_wait=on_progress,
            concurrency=api.concurrency,
            adaptive=api.adaptive_concurrency,
        )
        self.reachability = Reachability()
        self.policy = policy or RetryPolicy(
            max_attempts=api.max_attempts,
            base_delay_seconds=api.backoff_base_seconds,
            max_delay_seconds=api.backoff_max_seconds,
            max_retry_after_seconds=api.max_retry_after_seconds,
        )
        self.timeout = (min(MAX_CONNECT_TIMEOUT_SECONDS, api.timeout_seconds), api.timeout_seconds)
        self._timeout = urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1])
        self._api_transport = Transport(api.concurrency)
        # Separate pools for presigned URLs and downloads: they have no way of knowing the key.
        self._storage_transport = Transport(api.concurrency)
        self._storage_session = new_session(api.concurrency)

    # -- key ---------------------------------------------------------------------------------
    @property
    def key_origin(self) -> str:
        return self._key.origin

    def set_key(self, key: ApiKey) -> None:
        """Swap the key (reload, or a key file that changed)."""
        self._key = key

    def close(self) -> None:
        self._api_transport.close()
        self._storage_transport.close()
        self._storage_session.close()

    # -- API host ----------------------------------------------------------------------------
    def url_for(self, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"API paths start with '/': {path!r}")
        return self.api.base_url + path

    def upload_url_for(self, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"upload paths start with '/': {path!r}")
        return self.api.upload_base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        replay_safe: bool = True,
        retry: bool = True,
        upload_host: bool = False,
    ) -> Any:
        """Send one API request (with retries) and return the envelope's ``data``.

        ``replay_safe=False`` marks requests that must not be repeated unless they certainly
        did not reach the server (a video generation costs money, a one-request upload may
        store the file twice): a lost answer, a timeout, a reset, a 408 or a 5xx raises
        `ResponseLost` at once, since the server may have carried the request out.
        ``data`` may be a zero-argument callable producing a fresh body per attempt (a
        streamed upload body can only be read once). ``upload_host`` sends the request to
        ``api.upload_base_url`` instead of ``api.base_url``.
        """
        what = f"{method} {path}"
        url = self.upload_url_for(path) if upload_host else self.url_for(path)
        # The upload host's reference spells the header X-API-KEY (names are case-blind).
        key_header = "X-API-KEY" if upload_host else "X-Api-Key"

        def attempt() -> Any:
            body = data() if callable(data) else data
            return self._send_api(
                method, url, json, body, params, headers, what, replay_safe, key_header
            )

        if not retry:
            return attempt()
        return with_retries(
            attempt, self.policy, self.throttle, what=what, reachability=self.reachability
        )

    def _send_api(
        self,
        method: str,
        url: str,
        json: Any,
        data: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        what: str,
        replay_safe: bool,
        key_header: str,
    ) -> Any:
        self.throttle.before_request(keyed=True)
        all_headers = {**BASE_HEADERS, "Accept": "application/json", **(headers or {})}
        all_headers[key_header] = self._key.value
        body = data
        if json is not None:
            body = dumps_json(json)
            all_headers.setdefault("Content-Type", "application/json")
        elif isinstance(data, FileBody):
            body = data.whole() or data
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        started = time.monotonic()
        try:
            # No redirect is followed: the key must only ever reach the API host.
            response = self._api_transport.send(
                method, url, headers=all_headers, body=body, timeout=self._timeout
            )
        except TransportError as error:
            raise _transport_failure(error, what, replay_safe) from None
        # The time of a request with a file body grows with the file, not with HeyGen's load;
        # a small JSON body says as much about the load as a bodiless request.
        latency = time.monotonic() - started if data is None else None
        self.throttle.answered(latency, refused=response.status_code == 429)
        try:
            return parse_api_response(response)
        except TransientError as error:
            if replay_safe:
                raise
            # A 5xx or 408 may come from a proxy after the server acted on the request.
            raise ResponseLost(
                f"{what}: {error.message}; the request may have been carried out",
                status=error.status,
                code=error.code,
            ) from None

    # -- storage host (presigned URLs) -------------------------------------------------------
    def put_to_storage(
        self,
        url: str,
        body_factory: Callable[[], Any],
        headers: Mapping[str, str],
    ) -> Answer:
        """One PUT of a body to a presigned URL (no retries: the caller owns the slot logic).

        ``body_factory`` returns a fresh body whose length is known, so it is sent with an
        exact ``Content-Length`` instead of chunked encoding, which storage refuses.
        """
        self.throttle.before_request()
        body = body_factory()
        if isinstance(body, FileBody):
            body = body.whole() or body
        try:
            response = self._storage_transport.send(
                "PUT",
                url,
                headers={**BASE_HEADERS, **headers},
                body=body,
                timeout=self._timeout,
            )
        except TransportError as error:
            failure = _transport_failure(error, "upload to storage", replay_safe=True)
            failure.storage_url = url
            raise failure from None
        _raise_for_storage_at(response, url)
        return response

    # -- reachability ------------------------------------------------------------------------
    def probe(self, storage_url: str | None = None) -> str | None:
        """One cheap request to the API, and one to the storage host of ``storage_url`` when
        given: None if both answered, else what went wrong. Never retried, never raises."""
        timeout = (
            min(MAX_CONNECT_TIMEOUT_SECONDS, self.api.timeout_seconds),
            min(PROBE_TIMEOUT_SECONDS, self.api.timeout_seconds),
        )
        probe_timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        query = urlencode(PROBE_PARAMS)
        checks: list[tuple[str, Transport, str, str, dict[str, str]]] = [
            (
                "API",
                self._api_transport,
                "GET",
                f"{self.url_for(PROBE_PATH)}?{query}",
                {"X-Api-Key": self._key.value},
            )
        ]
        if storage_url is not None:
            # The storage host's root: it answers (a 4xx) whenever it is up; no key goes there.
            parts = urllib3.util.parse_url(storage_url)
            origin = f"{parts.scheme}://{parts.netloc}/"
            checks.append(("storage", self._storage_transport, "HEAD", origin, {}))
        for name, transport, method, url, headers in checks:
            try:
                response = transport.send(
                    method,
                    url,
                    headers={**BASE_HEADERS, "Accept": "application/json", **headers},
                    timeout=probe_timeout,
                )
            except TransportError as error:
                return _transport_failure(error, f"{name} probe", replay_safe=True).message
            if response.status_code >= 500 or response.status_code == 408:
                return f"{name} probe: HTTP {response.status_code}"
        return None

    def open_download(self, url: str) -> requests.Response:
        """A streamed GET of a presigned URL (a finished video); the caller closes it."""
        self.throttle.before_request()
        try:
            response = self._storage_session.get(
                url, stream=True, timeout=self.timeout, allow_redirects=True
            )
        except requests.RequestException as error:
            failure = _network_error(error, "download", replay_safe=True)
            failure.storage_url = url  # an outage's probe then asks the storage host too
            raise failure from None
        if not 200 <= response.status_code < 300:
            with response:
                _raise_for_storage_at(response, url)
        return response


def _raise_for_storage_at(response: HttpAnswer, url: str) -> None:
    """`raise_for_storage`, the refusal tagged with the presigned URL: an outage's probe then
    asks that storage host too."""
    try:
        raise_for_storage(response)
    except ApiError as refused:
        refused.storage_url = url
        raise
