{#- Model test: the listed columns together identify a row (a compound grain). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set column_list = combination_of_columns | join(', ') %}

select
    {{ column_list }},
    count(*) as n_rows
from {{ model }}
group by {{ column_list }}
having count(*) > 1

{% endtest %}
