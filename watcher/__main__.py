"""`python -m watcher` is `benchwatch`."""

import sys

from watcher.cli import main

sys.exit(main())
