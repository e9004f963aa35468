"""The service shell: wiring the daemon together, signals, sd_notify and the watchdog, the
heartbeat, metrics and logging.

May import: `watcher.pipeline`, `watcher.intake`, `watcher.heygen`, `watcher.state`,
`watcher.config`.
"""
