"""Setup: turn infrastructure/environments.yaml into Prefect blocks and a local dbt profiles.yml."""
