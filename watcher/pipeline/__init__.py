"""The pipeline stages, one module each: `take` (where a file's fate is decided: ignore, skip,
refuse, adopt, admit) → `upload` (the asset cache, then the protocol sends the bytes) →
`outcome` (what a failure means: pause, retry later, give up) → `record` (move, sidecar,
`uploaded`) → `videos` (templated folders). `pipeline.build_pipeline` wires them once;
`workpool` runs them; `batching` carries v3 batches.

The bytes themselves are sent by the protocols `watcher.heygen.uploads` names. May import:
`watcher.intake`, `watcher.convert`, `watcher.heygen`, `watcher.state`, `watcher.config`.
"""
