"""The script a user writes from the seed document: the yardstick for the benchmarks.

A watchdog ``on_created`` handler that calls the seed's two functions, ``get_upload_url`` and
``upload_file``, one file after another, and notes the asset id in a sidecar so the benchmark
can see when it is done. The two functions are the seed's, with the API base made
configurable (the seed hard-codes api.heygen.com).

    HEYGEN_API_KEY=... HEYGEN_API_BASE=http://127.0.0.1:PORT python bench/baseline_seed.py DIR
"""

from __future__ import annotations

import json
import mimetypes
import os
import sys
import time

import requests
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

API_BASE = os.environ.get("HEYGEN_API_BASE", "https://api.heygen.com")


def get_upload_url(content_type: str) -> dict:
    response = requests.post(
        f"{API_BASE}/v1/asset",
        headers={"X-Api-Key": os.environ["HEYGEN_API_KEY"], "Content-Type": "application/json"},
        json={"content_type": content_type},
    )
    data = response.json()
    if data.get("error"):
        raise Exception(data["error"])
    return data["data"]


def upload_file(file_path: str, content_type: str) -> str:
    # 1. Get upload URL
    upload_data = get_upload_url(content_type)
    url = upload_data["url"]
    asset_id = upload_data["asset_id"]
    # 2. Upload file
    with open(file_path, "rb") as f:
        response = requests.put(url, headers={"Content-Type": content_type}, data=f)
    if not response.ok:
        raise Exception(f"Upload failed: {response.status_code}")
    return asset_id


class Handler(FileSystemEventHandler):
    def on_created(self, event):  # type: ignore[no-untyped-def]
        if event.is_directory or event.src_path.endswith(".asset.json"):
            return
        content_type = mimetypes.guess_type(event.src_path)[0] or "application/octet-stream"
        try:
            asset_id = upload_file(event.src_path, content_type)
        except Exception as error:
            print(f"failed: {event.src_path}: {error}", file=sys.stderr, flush=True)
            return
        with open(event.src_path + ".asset.json", "w") as out:
            json.dump({"asset_id": asset_id}, out)


if __name__ == "__main__":
    observer = Observer()
    observer.schedule(Handler(), sys.argv[1], recursive=True)
    observer.start()
    print("watching", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        observer.stop()
