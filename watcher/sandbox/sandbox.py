"""The sandbox as a whole: three listeners (API, storage, and the upload host) over one
shared state."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from watcher.sandbox.api import ApiApp
from watcher.sandbox.context import Context
from watcher.sandbox.faults import Fault
from watcher.sandbox.models import SandboxVideo, SeenRequest, StoredAsset
from watcher.sandbox.server import Listener, Pipeline
from watcher.sandbox.signing import Signer
from watcher.sandbox.state import SandboxState, Settings
from watcher.sandbox.storage import StorageApp
from watcher.sandbox.uploadhost import UploadApp

OUTCOMES = ("completed", "failed", "stuck")


class _Setting:
    """An attribute stored in the shared Settings, so running handlers see changes at once."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, sandbox: Sandbox | None, owner: type) -> Any:
        if sandbox is None:
            return self
        return getattr(sandbox.settings, self.name)

    def __set__(self, sandbox: Sandbox, value: Any) -> None:
        setattr(sandbox.settings, self.name, value)


class Sandbox:
    """A local, strict, fault-injectable HeyGen API plus its S3-like storage."""

    api_key = _Setting()
    url_ttl_seconds = _Setting()
    latency_seconds = _Setting()
    video_pending_seconds = _Setting()
    video_processing_seconds = _Setting()
    batch_processing_seconds = _Setting()
    batch_page_size = _Setting()
    video_url_ttl_seconds = _Setting()
    asset_processing_seconds = _Setting()
    rate_limit_per_second = _Setting()
    rate_limit_burst = _Setting()

    def __init__(
        self,
        api_key: str = "sandbox",
        data_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        api_port: int = 0,
        storage_port: int = 0,
        video_pending_seconds: float = 0.2,
        video_processing_seconds: float = 0.3,
        url_ttl_seconds: float = 900,
        latency_seconds: float = 0.0,
        batch_processing_seconds: float = 0.0,
        video_url_ttl_seconds: float = 900,
        asset_processing_seconds: float = 0.0,
        upload_port: int = 0,
        rate_limit_per_second: float = 0.0,
        rate_limit_burst: int = 10,
    ) -> None:
        self.settings = Settings(
            api_key=api_key,
            url_ttl_seconds=url_ttl_seconds,
            latency_seconds=latency_seconds,
            video_pending_seconds=video_pending_seconds,
            video_processing_seconds=video_processing_seconds,
            batch_processing_seconds=batch_processing_seconds,
            video_url_ttl_seconds=video_url_ttl_seconds,
            asset_processing_seconds=asset_processing_seconds,
            rate_limit_per_second=rate_limit_per_second,
            rate_limit_burst=rate_limit_burst,
        )
        self.host = host
        self._ports = (api_port, storage_port, upload_port)
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._state = self._new_state()
        self._signer = Signer()
        self._listeners: list[Listener] = []
        self._stopping = threading.Event()
        # Listeners closed by `refuse_connections`, by index, with the address to reopen.
        self._refused: dict[int, tuple[str, int]] = {}
        self._listening_lock = threading.Lock()

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._listeners:
            raise RuntimeError("the sandbox is already running")
        if self._stopping.is_set():
            self._state, self._signer = self._new_state(), Signer()
            self._stopping = threading.Event()
        ctx = Context(self._state, self._signer)
        api_port, storage_port, upload_port = self._ports
        storage = Listener(self.host, storage_port, self._pipeline(StorageApp(ctx)))
        ctx.storage_url = storage.url
        api = Listener(self.host, api_port, self._pipeline(ApiApp(ctx)))
        upload = Listener(self.host, upload_port, self._pipeline(UploadApp(ctx)))
        self._listeners = [api, storage, upload]
        for listener in self._listeners:
            listener.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._listening_lock:
            refused, self._refused = set(self._refused), {}
        self._listeners = [
            listener for index, listener in enumerate(self._listeners) if index not in refused
        ]
        # In parallel: each listener takes up to one poll interval to notice.
        stoppers = [threading.Thread(target=listener.stop) for listener in self._listeners]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        self._listeners = []
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Addresses ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self._running()[0].url

    @property
    def storage_url(self) -> str:
        return self._running()[1].url

    @property
    def upload_url(self) -> str:
        """The upload host (``upload.heygen.com``'s stand-in): ``POST /v1/asset``."""
        return self._running()[2].url

    @property
    def data_dir(self) -> Path:
        return self._state.assets_dir.parent

    # Faults, outcomes, inspection -----------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        self._state.inject(fault)

    def clear_faults(self) -> None:
        self._state.clear_faults()

    def refuse_connections(self, server: str = "*", seconds: float | None = None) -> None:
        """Close the listening socket of ``server`` (``api``, ``storage``, ``upload`` or ``*``):
        new connections are refused and open ones are cut, as when a host is down. It listens
        again on the same port after ``seconds``, or on `accept_connections`."""
        with self._listening_lock:
            for index, listener in enumerate(self._listeners):
                name = listener.server.pipeline.app.name
                if server not in ("*", name) or index in self._refused:
                    continue
                self._refused[index] = listener.address
                listener.stop()
        if seconds is not None:
            timer = threading.Timer(seconds, self.accept_connections)
            timer.daemon = True
            timer.start()

    def accept_connections(self) -> None:
        """Listen again, on the same ports, after `refuse_connections`."""
        with self._listening_lock:
            for index, (host, port) in list(self._refused.items()):
                old = self._listeners[index]
                listener = Listener(host, port, old.server.pipeline)
                self._listeners[index] = listener
                listener.start()
                del self._refused[index]

    def fail_ingestion(self, filename: str, code: str, message: str) -> None:
        """Make batch items for files of this name fail ingestion with this error object."""
        self._state.fail_ingestion(filename, code, message)

    def queue_video_outcome(
        self,
        outcome: str,
        failure_code: str | None = None,
        failure_message: str | None = None,
    ) -> None:
        """Decide how the next generated video ends: completed, failed, or stuck processing."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        if outcome == "failed":
            failure_code = failure_code or "VIDEO_GENERATION_FAILED"
            failure_message = failure_message or "video generation failed"
        self._state.queue_outcome(outcome, failure_code, failure_message)

    @property
    def requests(self) -> list[SeenRequest]:
        return self._state.requests()

    def clear_requests(self) -> None:
        self._state.clear_requests()

    @property
    def assets(self) -> dict[str, StoredAsset]:
        return self._state.assets()

    @property
    def videos(self) -> dict[str, SandboxVideo]:
        return self._state.videos()

    def expire_slots(self) -> None:
        """Make every presigned URL issued so far expired."""
        self._signer.expire_all()

    def reset(self) -> None:
        """Forget assets, slots, batches, videos, faults and recorded requests."""
        self._state.reset()

    # Internals ------------------------------------------------------------------------------

    def _new_state(self) -> SandboxState:
        if self._data_dir_arg is not None:
            return SandboxState(self._data_dir_arg, self.settings)
        self._tempdir = tempfile.TemporaryDirectory(prefix="heygen-sandbox-")
        return SandboxState(Path(self._tempdir.name), self.settings)

    def _pipeline(self, app: ApiApp | StorageApp | UploadApp) -> Pipeline:
        return Pipeline(app, self._state, self._stopping)

    def _running(self) -> list[Listener]:
        if not self._listeners:
            raise RuntimeError("the sandbox is not running: call start() first")
        return self._listeners


def serve(
    host: str,
    port: int,
    api_key: str,
    data_dir: Path | None,
    storage_port: int = 0,
    upload_port: int = 0,
) -> int:
    """Run a sandbox in the foreground until SIGINT or SIGTERM."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Sandbox(
            api_key=api_key,
            data_dir=data_dir,
            host=host,
            api_port=port,
            storage_port=storage_port,
            upload_port=upload_port,
        ) as sandbox:
            print(f"HeyGen sandbox API:     {sandbox.api_url}")
            print(f"HeyGen sandbox storage: {sandbox.storage_url}")
            # A fixed local key for a fake server; printing it is what makes it usable.
            print(f"API key:                {api_key}")
            print(f"HeyGen sandbox upload:  {sandbox.upload_url}")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
