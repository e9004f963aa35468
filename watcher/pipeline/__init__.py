"""The pipeline stages: take a file → upload it → decide what the outcome means → record it →
its video; the worker pool that runs them and the v3 batcher.

A file's fate (take, refuse, skip, upload again) is decided in `pipeline.Pipeline.process`; the
bytes are sent by `watcher.heygen.uploads`, through the protocol the pipeline is handed.
May import: `watcher.intake`, `watcher.heygen`, `watcher.state`, `watcher.config`.
"""
