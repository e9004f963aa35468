"""Noticing files: watchdog events, scans and rescans → settled paths → admitted and sniffed.

Sources only say "look at this path"; the settler decides a file is finished; admission and
sniffing decide what a file is and whether it may be taken. Everything here hands paths on
through callbacks and knows nothing of the pipeline. May import: `watcher.state` (our own
sidecars' names, the tree walker) and `watcher.config`.
"""
