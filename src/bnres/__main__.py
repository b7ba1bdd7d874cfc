"""``python -m bnres fit|validate|test|predict ...``: the Lightning CLI (see :mod:`bnres.cli.main`)."""

import sys

from bnres.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
