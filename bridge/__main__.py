"""``python -m bridge``: the same as the ``paranoim`` command."""

import sys

from bridge.cli import main

# Worker processes are spawned and import the main module again: only run here.
if __name__ == "__main__":
    sys.exit(main())
