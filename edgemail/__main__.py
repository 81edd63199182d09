"""``python -m edgemail ...`` is the ``edgemail`` command (the daemon is ``python -m edgemail run``)."""

import sys

from edgemail.cli import edgemail_main

if __name__ == "__main__":
    sys.exit(edgemail_main())
