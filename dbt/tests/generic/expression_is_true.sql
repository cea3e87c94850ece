{#-
    Row invariant: every row must satisfy a boolean SQL expression.
    Rows where the expression is NULL count as passing (as in SQL's WHERE);
    pair it with not_null tests where NULL must fail.

        data_tests:
          - expression_is_true:
              arguments:
                expression: "order_total = items_subtotal + shipping_fee"
-#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
