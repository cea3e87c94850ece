{#- Column test: no value below zero (NULLs pass; use not_null for those). -#}
{% test is_non_negative(model, column_name) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} < 0

{% endtest %}
