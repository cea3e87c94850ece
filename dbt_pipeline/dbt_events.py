"""dbt's structured events as the pipeline reads them, named in one place.

The step's log forwarding (prefect_flows.dbt_tasks) and each node's own page (prefect_flows.node_runs)
read the same events: dbt's levels, and the events that carry one node's result.
"""

from __future__ import annotations

import logging

# dbt's event levels, as Python logging levels; "debug" events stay in dbt's own log file.
LOG_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}

# dbt's line for one node's result ("1 of 28 OK created sql table model main.orders ....... [OK in 0.12s]").
RESULT_EVENTS = frozenset(
    {"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult", "LogNodeResult", "LogNodeNoOpResult",
     "LogFreshnessResult", "SkippingDetails"}
)  # fmt: skip
