"""`python -m retrain` runs the same command line as the `retrain` script."""

import sys

from retrain.cli import main

sys.exit(main())
