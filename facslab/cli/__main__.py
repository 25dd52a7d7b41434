"""``python -m facslab.cli``."""

import sys

from facslab.cli import main

sys.exit(main())
