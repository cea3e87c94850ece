{#-
    Divide as floating point and return NULL instead of failing when the
    denominator is 0. Dialects disagree on both points: BigQuery raises an
    error on x / 0 (it has SAFE_DIVIDE for this), DuckDB returns NULL, and
    Postgres-like databases truncate integer / integer.
-#}
{% macro safe_divide(numerator, denominator) -%}
    {{ return(adapter.dispatch('safe_divide', 'shop_analytics')(numerator, denominator)) }}
{%- endmacro %}

{% macro default__safe_divide(numerator, denominator) -%}
    cast({{ numerator }} as {{ dbt.type_float() }}) / nullif({{ denominator }}, 0)
{%- endmacro %}

{% macro duckdb__safe_divide(numerator, denominator) -%}
    {#- dbt.type_float() is a 4-byte float on DuckDB; use a double -#}
    cast({{ numerator }} as double) / nullif({{ denominator }}, 0)
{%- endmacro %}

{% macro bigquery__safe_divide(numerator, denominator) -%}
    safe_divide(cast({{ numerator }} as float64), {{ denominator }})
{%- endmacro %}

{% macro postgres__safe_divide(numerator, denominator) -%}
    {#- numeric, not float: Postgres has round(numeric, int) but no round(double precision, int) -#}
    cast({{ numerator }} as numeric) / nullif({{ denominator }}, 0)
{%- endmacro %}
