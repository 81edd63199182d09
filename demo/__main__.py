"""``python -m demo``: the demo (``make demo``)."""

import sys

from demo.run import main

if __name__ == "__main__":
    sys.exit(main())
