"""`python -m ubench` is the `ubench` command."""

import sys

from ubench.cli import main

sys.exit(main())
