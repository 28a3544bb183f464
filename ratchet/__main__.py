"""``python -m ratchet`` is the ``ratchet`` command."""

import sys

from ratchet.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
