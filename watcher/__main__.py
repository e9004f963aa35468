import sys

from watcher.commands.cli import main

sys.exit(main())
