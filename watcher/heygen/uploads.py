"""The four upload protocols behind one interface.

Every protocol turns a `LocalFile` into an `UploadedAsset`. Those with a presigned slot report
it through ``on_slot`` *before* sending any bytes, so a journal can record it and a resumed
upload can PUT to the same slot again (a second PUT to a slot replaces its bytes; it never
creates a second asset). A slot that has expired is replaced by a fresh one.
"""

from __future__ import annotations

from watcher.heygen.client import HeyGenClient
from watcher.heygen.onerequest import V1Upload, V3Multipart
from watcher.heygen.presigned import V1Presigned
from watcher.heygen.uploadfile import UploadProtocol
from watcher.heygen.v3direct import V3Direct

# The protocols by their configuration name (`api.upload_protocol`); each lives in its own
# module: `presigned` (v1-presigned), `v3direct`, `onerequest` (v3-multipart, v1-upload).
PROTOCOLS: dict[str, type[UploadProtocol]] = {
    cls.name: cls for cls in (V1Presigned, V1Upload, V3Direct, V3Multipart)
}


def make_protocol(client: HeyGenClient) -> UploadProtocol:
    return PROTOCOLS[client.api.upload_protocol](client)
