{#-
    Day-of-week helpers. Every dialect spells these differently and numbers
    the days differently (BigQuery: Sunday = 1, ISO: Monday = 1), so both
    macros dispatch per adapter. Both accept a date or a timestamp.
-#}

{#- English day name, e.g. 'Monday' -#}
{% macro day_of_week_name(date_expression) -%}
    {{ return(adapter.dispatch('day_of_week_name', 'shop_analytics')(date_expression)) }}
{%- endmacro %}

{% macro default__day_of_week_name(date_expression) -%}
    {#- Postgres / Redshift: to_char pads the name to 9 characters -#}
    trim(to_char(cast({{ date_expression }} as date), 'Day'))
{%- endmacro %}

{% macro duckdb__day_of_week_name(date_expression) -%}
    dayname(cast({{ date_expression }} as date))
{%- endmacro %}

{% macro bigquery__day_of_week_name(date_expression) -%}
    format_date('%A', cast({{ date_expression }} as date))
{%- endmacro %}


{#- ISO day number: Monday = 1 ... Sunday = 7 -#}
{% macro iso_day_of_week(date_expression) -%}
    {{ return(adapter.dispatch('iso_day_of_week', 'shop_analytics')(date_expression)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(date_expression) -%}
    cast(extract(isodow from cast({{ date_expression }} as date)) as {{ dbt.type_int() }})
{%- endmacro %}

{% macro duckdb__iso_day_of_week(date_expression) -%}
    isodow(cast({{ date_expression }} as date))
{%- endmacro %}

{% macro bigquery__iso_day_of_week(date_expression) -%}
    {#- extract(dayofweek) counts Sunday = 1 ... Saturday = 7; shift to ISO -#}
    mod(extract(dayofweek from cast({{ date_expression }} as date)) + 5, 7) + 1
{%- endmacro %}
