{#-
    dbt.dateadd() returns a DATETIME on BigQuery but a TIMESTAMP on DuckDB.
    Comparing a BigQuery TIMESTAMP column with a DATETIME fails, so shift the
    timestamp and cast the result back to the adapter's timestamp type.
-#}
{% macro timestamp_add(datepart, interval, timestamp_expression) -%}
    cast({{ dbt.dateadd(datepart, interval, timestamp_expression) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}
