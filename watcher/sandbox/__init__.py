"""A local HeyGen: a strict, fault-injectable API and S3-like storage for tests and benchmarks."""

from watcher.sandbox.faults import Fault
from watcher.sandbox.models import SandboxVideo, SeenRequest, StoredAsset
from watcher.sandbox.sandbox import Sandbox, serve

__all__ = ["Fault", "Sandbox", "SandboxVideo", "SeenRequest", "StoredAsset", "serve"]
