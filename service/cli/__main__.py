"""`python -m citeqa.service.cli`: the service's commands alone."""

import sys

from citeqa.service.cli import main

sys.exit(main())
