"""The command line: `heygen-watcher run|scan|upload|status|retry|check-config|sandbox`.

Thin: each command parses its arguments and calls the layers below. May import everything,
including `watcher.sandbox` (for `run --sandbox` and `sandbox`).
"""
