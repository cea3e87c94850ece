{#-
    Normalise a free-text code coming from a source system into a snake_case
    enum value: ' Credit Card ' -> 'credit_card', 'Canceled' -> 'canceled'.
    Mapping spelling variants onto one value stays in the staging model.
    Plain SQL (lower, trim, replace) that every adapter supports.
-#}
{% macro clean_enum(column_name) -%}
    replace(lower(trim({{ column_name }})), ' ', '_')
{%- endmacro %}
