"""Entry point of `python -m infrastructure.setup_profiles`."""

import sys

from dbt_pipeline.interrupts import ctrl_c_ends_the_command
from dbt_pipeline.prefect_settings import use_repository_prefect_settings

with ctrl_c_ends_the_command("setup_profiles"):  # its imports too: Ctrl-C may come at any moment
    use_repository_prefect_settings()  # before Prefect is imported: its settings are read then
    from infrastructure.setup_profiles.cli import main

    status = main()
sys.exit(status)
