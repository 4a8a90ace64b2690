"""`python -m bertnli` (and `torchrun -m bertnli`) run the command line."""

import sys

from bertnli.cli import main

sys.exit(main())
