"""Entry point of `python -m infrastructure.doctor`."""

import sys

from dbt_pipeline.interrupts import ctrl_c_ends_the_command

with ctrl_c_ends_the_command("doctor"):  # its imports too: Ctrl-C may come at any moment
    from infrastructure.doctor.checks import main

    status = main()
sys.exit(status)
