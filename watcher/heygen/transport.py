"""HTTP for the client: a lean `Transport` for API requests and presigned uploads, and requests
sessions for streamed downloads. The client keeps one of each for the API host (it carries the
key) apart from the one for storage (it never does)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, _basic_auth_str
from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest, Request
from requests.sessions import merge_hooks, merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    DEFAULT_ACCEPT_ENCODING,
    DEFAULT_CA_BUNDLE_PATH,
    get_auth_from_url,
    get_environ_proxies,
    prepend_scheme_if_needed,
    requote_uri,
    select_proxy,
)
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    NewConnectionError,
    ReadTimeoutError,
    URLSchemeUnknown,
)

from watcher import __version__
from watcher.heygen import headers

USER_AGENT = f"heygen-watcher/{__version__}"
# urllib3 sends file bodies in 16 KiB blocks by default; 1 MiB blocks cut the number of
# read/send calls 64-fold for large uploads at the cost of one small buffer per request.
SEND_BLOCK_BYTES = 1024 * 1024


class _BigBlockAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = SEND_BLOCK_BYTES
        super().init_poolmanager(*args, **kwargs)


# Origins whose environment proxies are remembered; a handful are ever used (API, upload,
# storage, downloads), the bound only guards against a stream of distinct presigned hosts.
_ORIGINS_REMEMBERED = 64


class _Session(requests.Session):
    """A session that reads the proxy settings from the environment once per origin.

    requests reads them for every request, walking the whole environment twice (``getproxies``
    and ``no_proxy``): for a small upload that cost more CPU than sending it. The environment
    of a running daemon does not change, so the answer per origin does not either.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environ_proxies: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def prepare_request(self, request: Request) -> PreparedRequest:
        """requests' own, without cookies. Neither HeyGen's API nor presigned storage uses
        them, and merging the session's jar (and its params and auth, always empty here)
        into every request cost about a tenth of a small upload's CPU. Sending none also
        means a cookie one host sets never reaches another. Session hooks still apply."""
        headers: CaseInsensitiveDict[str | bytes] = CaseInsensitiveDict(self.headers)
        headers.update(request.headers or {})
        prepared = PreparedRequest()
        prepared.prepare(
            method=str(request.method).upper(),
            url=request.url,
            files=request.files,
            data=request.data,
            json=request.json,
            headers=headers,
            params=request.params,
            auth=request.auth or self.auth,
            cookies=RequestsCookieJar(),
            hooks=merge_hooks(request.hooks, self.hooks),
        )
        return prepared

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        proxies = {} if proxies is None else proxies
        no_proxy = proxies.get("no_proxy")
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc, no_proxy)
        found = self._environ_proxies.get(origin)
        if found is None:
            if len(self._environ_proxies) >= _ORIGINS_REMEMBERED:
                self._environ_proxies.clear()
            found = self._environ_proxies[origin] = get_environ_proxies(url, no_proxy=no_proxy)
        for name, value in found.items():
            proxies.setdefault(name, value)
        if verify is True or verify is None:
            verify = self._ca_bundle or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


class _NoAuth(AuthBase):
    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        return request


def new_session(pool_size: int) -> requests.Session:
    """A session with keep-alive pools sized to the workers and no hidden retries.

    Retries belong to `watcher.heygen.retry`, where they are counted and logged, so the
    adapter's own are off. No default headers carry credentials: the API key is added per
    request by the client, for the API host only.
    """
    session = _Session()
    session.headers["User-Agent"] = USER_AGENT
    # Proxies from the environment are honoured, but ~/.netrc is not: an Authorization header
    # it added would break presigned signatures and leak a credential to the storage host.
    session.auth = _NoAuth()
    adapter = _BigBlockAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# -- the lean path: API requests and presigned PUTs through urllib3's pools ---------------------
# requests spends more CPU preparing, adapting and wrapping a small request than urllib3 spends
# sending it (about 0.8 ms against 0.35 ms here): for a daemon that makes two or three small
# requests per file that was most of its CPU. `Transport` keeps what this client relies on from
# requests (its default headers, exact lengths for streamed bodies, proxies and CA bundle from
# the environment, no cookies, no redirects, no retries of its own) and drops the rest.

# requests' default headers, sent the same way so that HeyGen sees the same requests.
BASE_HEADERS: dict[str, str] = {
    "User-Agent": USER_AGENT,
    "Accept-Encoding": DEFAULT_ACCEPT_ENCODING,
    "Accept": "*/*",
    "Connection": "keep-alive",
}


class Answer:
    """A finished exchange: what was sent and the whole answer (answers here are small: an
    envelope, or an S3-style error). Reads like the parts of `requests.Response` the
    envelope parsers use."""

    __slots__ = (
        "content",
        "headers",
        "method",
        "reason",
        "request_body",
        "request_headers",
        "status_code",
        "url",
    )

    def __init__(
        self,
        method: str,
        url: str,
        request_headers: dict[str, str],
        request_body: object,
        response: urllib3.BaseHTTPResponse,
    ) -> None:
        self.method = method
        self.url = url
        self.request_headers = request_headers
        self.request_body = request_body
        self.status_code: int = response.status
        self.reason: str = response.reason or ""
        self.headers: Mapping[str, str] = response.headers
        self.content: bytes = response.data

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; `ValueError` when it is not."""
        return json.loads(self.content)


class TransportError(Exception):
    """A request that got no answer. ``name`` is the kind, spelled as requests spells it
    (``ConnectTimeout``, ``ReadTimeout``, ``ConnectionError``...), so messages read the same."""

    def __init__(self, name: str, *, timed_out: bool, never_sent: bool) -> None:
        super().__init__(name)
        self.name = name
        self.timed_out = timed_out
        # Certainly never reached the server: safe to send again whatever the request.
        self.never_sent = never_sent


def _transport_error(error: Exception) -> TransportError:
    if isinstance(error, NewConnectionError):  # refused, unreachable, no such host
        return TransportError("ConnectionError", timed_out=False, never_sent=True)
    if isinstance(error, ConnectTimeoutError):
        return TransportError("ConnectTimeout", timed_out=True, never_sent=True)
    if isinstance(error, ReadTimeoutError):
        return TransportError("ReadTimeout", timed_out=True, never_sent=False)
    if isinstance(error, urllib3.exceptions.SSLError):
        return TransportError("SSLError", timed_out=False, never_sent=False)
    if isinstance(error, urllib3.exceptions.ProxyError):
        return TransportError("ProxyError", timed_out=False, never_sent=False)
    if isinstance(error, URLSchemeUnknown):
        return TransportError("InvalidSchema", timed_out=False, never_sent=True)
    if isinstance(error, LocationValueError):
        return TransportError("InvalidURL", timed_out=False, never_sent=True)
    return TransportError("ConnectionError", timed_out=False, never_sent=False)


_Route = tuple[urllib3.HTTPConnectionPool | None, urllib3.PoolManager | None]


class Transport:
    """Keep-alive pools per origin, straight on urllib3.

    An origin the environment sends through a proxy (``HTTPS_PROXY``, ``NO_PROXY``, read once
    per origin as requests reads them) goes through urllib3's proxy manager, with the proxy's
    credentials as requests sends them; every other origin gets its own pool. TLS is verified
    against ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` or requests' bundle, as before.
    ``observers`` are told of every exchange (the contract tests record the wire with it).
    """

    def __init__(self, pool_size: int) -> None:
        headers.install()
        self._pool_size = max(pool_size, 1)
        self._ca_bundle = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or DEFAULT_CA_BUNDLE_PATH
        )
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], _Route] = {}
        self._proxy_managers: dict[str, urllib3.PoolManager] = {}
        self.observers: list[Callable[[Answer], None]] = []

    def _pool_settings(self) -> dict[str, Any]:
        return {
            "maxsize": self._pool_size,
            "block": False,
            "retries": False,
            "blocksize": SEND_BLOCK_BYTES,
        }

    def _tls_settings(self) -> dict[str, Any]:
        if os.path.isdir(self._ca_bundle):
            return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": self._ca_bundle}
        return {"cert_reqs": "CERT_REQUIRED", "ca_certs": self._ca_bundle}

    def _route(self, scheme: str, netloc: str, url: str) -> _Route:
        key = (scheme, netloc)
        route = self._routes.get(key)
        if route is not None:
            return route
        with self._lock:
            route = self._routes.get(key)
            if route is None:
                if len(self._routes) >= _ORIGINS_REMEMBERED:
                    self._close_routes()
                route = self._routes[key] = self._new_route(scheme, url)
        return route

    def _new_route(self, scheme: str, url: str) -> _Route:
        proxy = select_proxy(url, get_environ_proxies(url, no_proxy=None))
        if proxy:
            return None, self._proxy_manager(prepend_scheme_if_needed(proxy, "http"))
        parsed = urllib3.util.parse_url(url)
        if not parsed.host:
            raise LocationValueError(f"no host in {url!r}")
        if scheme == "https":
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                parsed.host, parsed.port, **self._pool_settings(), **self._tls_settings()
            )
        elif scheme == "http":
            pool = urllib3.HTTPConnectionPool(parsed.host, parsed.port, **self._pool_settings())
        else:
            raise URLSchemeUnknown(scheme)
        return pool, None

    def _proxy_manager(self, proxy: str) -> urllib3.PoolManager:
        manager = self._proxy_managers.get(proxy)
        if manager is None:
            username, password = get_auth_from_url(proxy)
            headers = (
                {"Proxy-Authorization": _basic_auth_str(username, password)} if username else {}
            )
            settings = {**self._pool_settings(), **self._tls_settings()}
            if proxy.lower().startswith("socks"):
                try:
                    from urllib3.contrib.socks import SOCKSProxyManager
                except ImportError:  # PySocks is not installed: as requests, no SOCKS
                    raise URLSchemeUnknown(proxy.split(":", 1)[0]) from None

                manager = SOCKSProxyManager(proxy, username=username, password=password, **settings)
            else:
                manager = urllib3.ProxyManager(proxy, proxy_headers=headers, **settings)
            self._proxy_managers[proxy] = manager
        return manager

    def _close_routes(self) -> None:
        for pool, _manager in self._routes.values():
            if pool is not None:
                pool.close()
        self._routes.clear()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: Any = None,
        timeout: urllib3.Timeout,
    ) -> Answer:
        """One request, no retries, no redirects followed; the whole answer is read.

        ``body`` is bytes or a reader with ``__len__`` (sent with that exact
        ``Content-Length``: presigned storage refuses chunked bodies). Raises
        `TransportError` when no answer came."""
        scheme, netloc, path, query, _ = urlsplit(url)
        if body is not None:
            headers["Content-Length"] = str(len(body))
        elif method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        try:
            pool, manager = self._route(scheme.lower(), netloc, url)
            if pool is not None:
                target = requote_uri(f"{path or '/'}?{query}" if query else path or "/")
                response = pool.urlopen(
                    method,
                    target,
                    body=body,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    timeout=timeout,
                    assert_same_host=False,
                )
            else:
                assert manager is not None
                response = manager.urlopen(
                    method,
                    requote_uri(url),
                    body=body,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    timeout=timeout,
                )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _transport_error(error) from None
        answer = Answer(method, url, headers, body, response)
        for observer in self.observers:
            observer(answer)
        return answer

    def close(self) -> None:
        with self._lock:
            self._close_routes()
            for manager in self._proxy_managers.values():
                manager.clear()
            self._proxy_managers.clear()
