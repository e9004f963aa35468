"""HTTP sessions: one for the API host (carries the key), one for storage (never does)."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.models import PreparedRequest

from watcher import __version__

USER_AGENT = f"heygen-watcher/{__version__}"
# urllib3 sends file bodies in 16 KiB blocks by default; 1 MiB blocks cut the number of
# read/send calls 64-fold for large uploads at the cost of one small buffer per request.
SEND_BLOCK_BYTES = 1024 * 1024


class _BigBlockAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = SEND_BLOCK_BYTES
        super().init_poolmanager(*args, **kwargs)


class _NoAuth(AuthBase):
    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        return request


def new_session(pool_size: int) -> requests.Session:
    """A session with keep-alive pools sized to the workers and no hidden retries.

    Retries belong to `watcher.heygen.retry`, where they are counted and logged, so the
    adapter's own are off. No default headers carry credentials: the API key is added per
    request by the client, for the API host only.
    """
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    # Proxies from the environment are honoured, but ~/.netrc is not: an Authorization header
    # it added would break presigned signatures and leak a credential to the storage host.
    session.auth = _NoAuth()
    adapter = _BigBlockAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
