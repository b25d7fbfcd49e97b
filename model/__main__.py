"""``python -m model``: the audit command from a checkout (see ``audit.py``)."""

import sys

from .audit import main

sys.exit(main())
