"""`python -m citeqa`: the same as the installed `citeqa` command."""

import sys

from citeqa.cli import main

sys.exit(main())
