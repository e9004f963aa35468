"""Configuration: YAML → validated, typed, immutable settings, and where the API key comes from.

Also the facts every layer shares: the media types HeyGen accepts and the video templates'
rendering rules. May import: nothing else of the project (it is the bottom layer).
"""

from watcher.config.checker import ConfigError
from watcher.config.loader import ApiConfig, Config, FolderConfig, load_config, parse_config

__all__ = ["ApiConfig", "Config", "ConfigError", "FolderConfig", "load_config", "parse_config"]
