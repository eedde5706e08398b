"""`python -m c360.cli ...`: the same entry point as the `c360` script."""

import sys

from c360.cli import main

sys.exit(main())
