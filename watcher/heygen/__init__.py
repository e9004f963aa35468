"""The HeyGen API client: sessions, the key, envelopes, typed errors, retries, the shared
throttle, the upload protocols and the video calls.

Knows nothing of folders, journals or the service: progress is reported through a callback it
is handed. May import: `watcher.config` (its settings and the key).
"""
