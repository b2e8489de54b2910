"""`python -m loop.cli`."""

import sys

from loop.cli import main

if __name__ == "__main__":  # not when a spawned worker (data-parallel training) imports it again
    sys.exit(main())
