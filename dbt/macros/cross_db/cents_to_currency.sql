{#-
    Turn an integer amount in cents into a currency amount with two decimals.

    The result must add up exactly (order totals are tested against the sum of
    their lines), so it is a fixed-point decimal on every adapter. What "fixed
    point" needs differs per dialect, hence the dispatch:
      - DuckDB: a bare `numeric` is decimal(18,3) and dividing decimals yields a
        double, so divide as double, round, and cast to a 2-decimal decimal.
      - BigQuery: NUMERIC division is exact (9 decimals); round to cents.
      - others: cast to the adapter's numeric type and round.
-#}
{% macro cents_to_currency(column_name, decimals=2) -%}
    {{ return(adapter.dispatch('cents_to_currency', 'shop_analytics')(column_name, decimals)) }}
{%- endmacro %}

{% macro default__cents_to_currency(column_name, decimals) -%}
    round(cast({{ column_name }} as {{ dbt.type_numeric() }}) / 100, {{ decimals }})
{%- endmacro %}

{% macro duckdb__cents_to_currency(column_name, decimals) -%}
    cast(round({{ column_name }} / 100.0, {{ decimals }}) as decimal(18, {{ decimals }}))
{%- endmacro %}

{% macro bigquery__cents_to_currency(column_name, decimals) -%}
    round(cast({{ column_name }} as numeric) / 100, {{ decimals }})
{%- endmacro %}
