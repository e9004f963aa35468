"""The API key after start: read again on SIGHUP or when its file changes, and the uploads a
401 paused resumed once it is (here, or by another daemon of the fleet).

The key itself is only handed to the client; nothing here logs it, only where it came from.
"""

from __future__ import annotations

import logging

from watcher.config.apikey import ApiKey, ApiKeyError, key_file_path, load_api_key
from watcher.config.live import LiveConfig
from watcher.heygen.client import HeyGenClient
from watcher.pipeline.outcome import AuthPause
from watcher.pipeline.resume import Resumer
from watcher.state.journal_api import Journal

log = logging.getLogger(__name__)


class KeyWatch:
    def __init__(
        self,
        live: LiveConfig,
        fixed: ApiKey | None,
        client: HeyGenClient,
        auth_pause: AuthPause,
        journal: Journal,
        resumer: Resumer,
    ) -> None:
        self.live = live
        self._fixed = fixed  # a key handed in (tests, the tour): never read again
        self.client = client
        self.auth_pause = auth_pause
        self.journal = journal
        self.resumer = resumer
        self._stamp = self._file_stamp()
        self.auth_paused = False  # as housekeeping last saw it

    def check_file(self) -> None:
        """Housekeeping's look at the key file: a new one (its stamp moved) is read."""
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            self.reload()

    def reload(self) -> None:
        """Read the key again; if it changed, resume whatever a 401 had paused."""
        if self._fixed is not None:
            key = self._fixed
        else:
            try:
                key = load_api_key(self.live.current.api)
            except ApiKeyError as error:
                log.error("cannot reload the API key: %s", error)
                return
        self.client.set_key(key)
        if self.auth_pause.active:
            log.info("API key reloaded from %s; resuming uploads", key.origin)
            self.auth_pause.clear()  # for the whole fleet
            self._resume_held()

    def follow_fleet(self) -> None:
        """A 401 pause taken from the fleet ended (another daemon reloaded its key): resume
        too. Every daemon resubmits the held files; each is claimed by one of them."""
        active = self.auth_pause.active
        if self.auth_paused and not active:
            log.info("the fleet's API key was reloaded by another daemon; resuming uploads")
            self._resume_held()
        self.auth_paused = active

    def _resume_held(self) -> None:
        self.auth_paused = False
        self.journal.set_meta("uploads_paused", None)
        self.resumer.resume_held()

    def _file_stamp(self) -> tuple[float, int] | None:
        path = key_file_path(self.live.current.api)
        if path is None:
            return None
        try:
            info = path.stat()
        except OSError:
            return None
        return (info.st_mtime, info.st_ino)
