"""``python -m lorainne``: the ``lorainne`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
