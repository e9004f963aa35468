"""HTTP sessions: one for the API host (carries the key), one for storage (never does)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar
from requests.models import PreparedRequest, Request
from requests.sessions import merge_hooks, merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import get_environ_proxies

from watcher import __version__

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
