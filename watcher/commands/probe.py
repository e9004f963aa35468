"""``heygen-watcher probe``: which upload protocols does this account accept?

HeyGen documents two different calls named ``/v1/asset`` (the seed's two-step flow on the API
host, and the one-request upload on ``upload.heygen.com``), and which one an account gets cannot
be known in advance. The probe uploads a tiny generated PNG with each protocol and reports what
happened; each successful probe leaves one tiny unused asset behind.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from watcher.config import ApiConfig
from watcher.config.apikey import ApiKey
from watcher.heygen.body import FileChangedError
from watcher.heygen.client import HeyGenClient
from watcher.heygen.errors import ApiError
from watcher.heygen.uploadfile import LocalFile
from watcher.heygen.uploads import PROTOCOLS

# A probe must answer quickly: a couple of tries per request, not the daemon's patience.
PROBE_MAX_ATTEMPTS = 2


def tiny_png() -> bytes:
    """A valid 1×1 PNG (67 bytes), generated rather than shipped."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x00"))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class ProbeResult:
    protocol: str
    ok: bool
    detail: str  # the asset id, or the refusal


def probe(api: ApiConfig, key: ApiKey) -> list[ProbeResult]:
    """Try every protocol once with the same tiny PNG, in a stable order."""
    data = tiny_png()
    results = []
    with tempfile.TemporaryDirectory(prefix="heygen-watcher-probe-") as folder:
        path = Path(folder) / "heygen-watcher-probe.png"
        path.write_bytes(data)
        file = LocalFile(path, len(data), "image/png", hashlib.sha256(data).hexdigest())
        for name in sorted(PROTOCOLS):
            settings = replace(
                api, upload_protocol=name, max_attempts=min(api.max_attempts, PROBE_MAX_ATTEMPTS)
            )
            client = HeyGenClient(settings, key)
            try:
                asset = PROTOCOLS[name](client).upload(file)
                results.append(ProbeResult(name, True, f"asset {asset.asset_id}"))
            except (ApiError, FileChangedError) as error:
                results.append(ProbeResult(name, False, str(error)))
            finally:
                client.close()
    return results


def render(results: list[ProbeResult], configured: str) -> list[str]:
    width = max(len(result.protocol) for result in results)
    lines = []
    for result in results:
        verdict = "OK" if result.ok else "refused"
        mark = "  (configured)" if result.protocol == configured else ""
        lines.append(f"{result.protocol:<{width}}  {verdict}: {result.detail}{mark}")
    return lines
