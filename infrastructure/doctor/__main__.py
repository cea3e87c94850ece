"""Entry point of `python -m infrastructure.doctor`."""

import sys

from infrastructure.doctor.checks import main

sys.exit(main())
