"""A local HeyGen: a strict, fault-injectable API and S3-like storage for tests and benchmarks.

It shares no code with the client it tests: it imports nothing of the project outside
`watcher.sandbox`, so a mistake in the client cannot hide in both.
"""

from watcher.sandbox.faults import Fault
from watcher.sandbox.models import SandboxVideo, SeenRequest, StoredAsset
from watcher.sandbox.sandbox import Sandbox, serve

__all__ = ["Fault", "Sandbox", "SandboxVideo", "SeenRequest", "StoredAsset", "serve"]
