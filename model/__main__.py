"""``python -m model`` (from a checkout) or ``python -m cascache_audit``: the audit command."""

import sys

from .audit import main

if __name__ == "__main__":
    sys.exit(main())
