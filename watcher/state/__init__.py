"""State on disk: the journal (the single source of truth for progress), sidecars, where files
and sidecars go, the rebuild from sidecars and the state-directory lock.

Knows nothing of the network or the pipeline. May import: `watcher.config`.
"""
