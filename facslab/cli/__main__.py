"""``python -m facslab.cli``."""

import sys

from facslab.cli import console

sys.exit(console())
