"""Entry point of `python -m infrastructure.setup_profiles`."""

import sys

from infrastructure.setup_profiles.cli import main

sys.exit(main())
