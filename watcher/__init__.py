"""heygen-watcher: watch drop folders and upload what lands there to HeyGen."""

__version__ = "0.1.0"
