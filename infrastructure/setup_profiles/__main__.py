"""Entry point of `python -m infrastructure.setup_profiles`."""

import sys

from dbt_pipeline.interrupts import ctrl_c_ends_the_command

with ctrl_c_ends_the_command("setup_profiles"):  # its imports too: Ctrl-C may come at any moment
    from infrastructure.setup_profiles.cli import main

    status = main()
sys.exit(status)
