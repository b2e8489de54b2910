"""`python -m loop.cli`."""

import sys

from loop.cli import main

sys.exit(main())
